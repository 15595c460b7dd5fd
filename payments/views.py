"""Payments: cardholder portal pages — payment code, agreements, linked balances."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from djmoney.money import Money

from core.errors import MengkaError
from core.money import to_minor
from members.models import Card, Cardholder, LinkedAccount
from members.portal import cardholder_required
from merchants.models import Merchant

from . import methods, selectors
from .forms import AgreementForm, PaymentCodeForm
from .qr import qr_svg


def _sources(cardholder: Cardholder, form: PaymentCodeForm | AgreementForm) -> tuple[Card | None, LinkedAccount | None]:
    card_id, account_id = form.source_ids()
    card = Card.objects.filter(pk=card_id, cardholder=cardholder).first() if card_id else None
    account = LinkedAccount.objects.filter(pk=account_id, cardholder=cardholder).first() if account_id else None
    return card, account


@never_cache
@cardholder_required
def pay_code(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The page shows a code after the cardholder picks how to pay; the script asks for a fresh one every 50 s."""
    form = PaymentCodeForm(request.POST or None, cardholder=cardholder)
    code = None
    if request.method == "POST" and form.is_valid():
        card, account = _sources(cardholder, form)
        try:
            code = methods.payment_code_generate(
                cardholder=cardholder,
                card=card,
                linked_account=account,
                use_points=form.cleaned_data["use_points"],
            )
        except MengkaError as error:
            messages.error(request, error.message)
    context = {"form": form, "code": code, "svg": qr_svg(code.qr_payload) if code else ""}
    if request.headers.get("X-Requested-With") == "fetch" and code is not None:
        return render(request, "payments/_code.html", context)
    return render(request, "payments/pay_code.html", context)


@never_cache
@cardholder_required
def agreements(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """Grants and lists agreements. A grant answers with the new token on this response only (no redirect, nothing
    kept in the session or in a message): only its hash is stored, so it is shown once."""
    form = AgreementForm(request.POST or None, cardholder=cardholder)
    granted = None
    if request.method == "POST" and form.is_valid():
        card, account = _sources(cardholder, form)
        merchant = Merchant.objects.filter(code=form.cleaned_data["merchant_code"]).first()
        if merchant is None:
            form.add_error("merchant_code", _("No such merchant."))
        else:
            try:
                granted = methods.agreement_grant(
                    cardholder=cardholder,
                    merchant=merchant,
                    card=card,
                    linked_account=account,
                    limit_per_payment=to_minor(Money(form.cleaned_data["limit_per_payment"], "CNY")),
                    limit_per_month=to_minor(Money(form.cleaned_data["limit_per_month"], "CNY")),
                    actor=request.user,
                )
            except MengkaError as error:
                form.add_error(None, error.message)
            else:
                form = AgreementForm(cardholder=cardholder)
    return render(
        request,
        "payments/agreements.html",
        {"form": form, "granted": granted, "agreements": selectors.agreements_of(cardholder=cardholder)},
    )


@require_POST
@cardholder_required
def agreement_revoke(request: HttpRequest, cardholder: Cardholder, agreement_id: str) -> HttpResponse:
    agreement = methods.agreement_revoke(cardholder=cardholder, agreement_id=agreement_id, actor=request.user)
    messages.success(
        request, _("%(merchant)s can no longer charge you.") % {"merchant": agreement.merchant.display_name}
    )
    return redirect("payments:agreements")


@cardholder_required
def balances(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    return render(request, "payments/balances.html", {"rows": selectors.linked_balances(cardholder=cardholder)})
