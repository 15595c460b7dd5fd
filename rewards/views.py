"""Rewards: the cardholder portal's points pages — every programme's balance at once with their total worth, points
expiring, statements, and exchanging points between the cardholder's own programmes."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from core.errors import MengkaError
from core.text import id_or_none
from members.models import Cardholder
from members.portal import cardholder_required

from . import selectors, services
from .forms import ExchangeForm, ExchangeQuoteForm
from .models import CURRENCY_SCALE
from .services import today

STATEMENT_PAGE = 20


@cardholder_required
def points(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    on = today()
    within_30 = {
        row.program_id: row.points
        for row in selectors.points_expiring(cardholder_id=cardholder.pk, within_days=30, on=on)
    }
    expiring = [
        (row, within_30.get(row.program_id, 0))
        for row in selectors.points_expiring(cardholder_id=cardholder.pk, within_days=90, on=on)
    ]
    balances = selectors.cardholder_balances(cardholder_id=cardholder.pk, on=on)
    return render(
        request,
        "rewards/points.html",
        {"balances": balances, "total_cny": selectors.wallet_total_cny(balances), "expiring": expiring},
    )


@cardholder_required
def points_statement(request: HttpRequest, cardholder: Cardholder, program_id: int) -> HttpResponse:
    """One programme's movements, newest first, a page at a time (keyset: `?after=<entry id>`). Only the signed-in
    cardholder's own account: another's, or a programme they hold no points in, is not found."""
    wallet = selectors.cardholder_wallet(cardholder_id=cardholder.pk, program_id=program_id)
    if wallet is None:
        raise Http404("No points in this programme.")
    after_id = id_or_none(request.GET.get("after"))
    page = selectors.account_statement(account_id=wallet.pk, after_id=after_id, limit=STATEMENT_PAGE, newest_first=True)
    return render(
        request,
        "rewards/points_statement.html",
        {"wallet": wallet, "program": wallet.program, "page": page, "first_page": after_id is None},
    )


def _cny(units: int) -> Decimal:
    """Ledger currency units (ten-thousandths of a yuan) as yuan, exactly (four places: no rounding happens)."""
    return (Decimal(units) / CURRENCY_SCALE).quantize(Decimal("0.0001"))


def _policy() -> Any:
    try:
        return services.exchange_policy_in_force()
    except MengkaError:
        return None


@cardholder_required
@require_http_methods(["GET", "POST"])
def points_exchange(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """Exchange points between two of the cardholder's own programmes. The page carries a key made when it renders,
    so a double submit exchanges once; a refusal is shown on the form and moves nothing."""
    programs = selectors.exchange_programs(cardholder=cardholder)
    if request.method == "POST":
        form = ExchangeForm(request.POST, programs=programs)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.points_exchange(
                    cardholder_id=cardholder.pk,
                    from_program=data["from_program"],
                    to_program=data["to_program"],
                    amount=data["amount"],
                    idempotency_key=f"portal:exchange:{cardholder.pk}:{data['idempotency_key']}",
                    actor=request.user,
                )
            except MengkaError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                messages.success(
                    request,
                    _("Exchanged %(amount)d %(source)s points.")
                    % {"amount": data["amount"], "source": data["from_program"].name},
                )
                return redirect("rewards_portal:points")
        status = 400
    else:
        form = ExchangeForm(initial={"idempotency_key": uuid.uuid4()}, programs=programs)
        status = 200
    policy = _policy()
    context = {
        "form": form,
        "policy": policy,
        "fee_percent": f"{(policy.fee_rate * 100).normalize():f}" if policy is not None else "",
        "programs": programs,
        "balances": selectors.cardholder_balances(cardholder_id=cardholder.pk),
    }
    return render(request, "rewards/points_exchange.html", context, status=status)


def _error(status: int, message: str, code: str, param: str | None = None) -> JsonResponse:
    return JsonResponse(
        {"error": {"type": "invalid_request_error", "code": code, "message": message, "param": param}}, status=status
    )


@cardholder_required
@require_GET
def points_exchange_quote(request: HttpRequest, cardholder: Cardholder) -> JsonResponse:
    """The exchange page's live preview: `exchange_quote` for `from_program`, `to_program` and `amount`, as JSON.
    Input that is not a number or names a programme not the cardholder's own is a 400; a quote the rules refuse (under
    the minimum, too few points out) answers with the error's own status and message."""
    form = ExchangeQuoteForm(request.GET, programs=selectors.exchange_programs(cardholder=cardholder))
    if not form.is_valid():
        param, errors = next(iter(form.errors.items()))
        return _error(400, str(errors[0]), "invalid_request", None if param == "__all__" else param)
    data = form.cleaned_data
    try:
        quote = services.exchange_quote(
            from_program=data["from_program"], to_program=data["to_program"], amount=data["amount"]
        )
    except MengkaError as exc:
        return _error(exc.http_status, exc.message, exc.code, exc.param)
    return JsonResponse(
        {
            "amount": data["amount"],
            "rate": f"{quote.rate.normalize():f}",
            "points_out": quote.points_out,
            "fee_rate": str(quote.fee_rate),
            "value_cny": str(_cny(quote.payer_units)),
            "fee_cny": str(_cny(quote.fee_units)),
            "result_value_cny": str(_cny(quote.payee_units)),
            "to_unit": data["to_program"].unit_code,
        }
    )
