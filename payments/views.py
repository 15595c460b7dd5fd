"""Payments: cardholder portal pages — the unified statement (every payment and refund across banks, its CSV and
each payment's detail), spending at a glance, payment code, agreements (and the hosted page of a merchant's agreement
request), linked balances."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from djmoney.money import Money

from core.errors import MengkaError
from core.money import exponent, to_minor
from core.qr import qr_svg
from core.replicas import replica_view
from members.models import Card, Cardholder, LinkedAccount
from members.portal import cardholder_required
from merchants.models import Merchant

from . import cardholder_statement, methods, selectors, spending
from .forms import AgreementForm, FundingForm, PaymentCodeForm, StatementFilterForm
from .models import AgreementRequest


def _sources(cardholder: Cardholder, form: FundingForm) -> tuple[Card | None, LinkedAccount | None]:
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


def return_url_with(url: str, request: AgreementRequest) -> str:
    """The merchant's return URL with `agreement_request` and `status` added to the query it already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [("agreement_request", request.public_id), ("status", request.status)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@never_cache
@cardholder_required
def agreement_grant(request: HttpRequest, cardholder: Cardholder, request_id: str) -> HttpResponse:
    """The hosted page of a merchant's agreement request: the cardholder sees who asks, why and within which limits,
    picks a card or balance, and grants or declines; either way they go back to the merchant's return URL. A request
    that is unknown, answered or expired gets a page saying so, and no redirect."""
    try:
        agreement_request = methods.agreement_request_for_page(request_id=request_id)
    except MengkaError as error:
        return _request_closed(request, None, error)
    form = FundingForm(request.POST or None, cardholder=cardholder)
    if agreement_request.current_status != AgreementRequest.Status.PENDING:
        return _request_closed(request, agreement_request, None)
    if request.method == "POST":
        try:
            if request.POST.get("decision") == "decline":
                answered = methods.agreement_request_decline(
                    cardholder=cardholder, request_id=request_id, actor=request.user
                )
            elif form.is_valid():
                card, account = _sources(cardholder, form)
                answered = methods.agreement_request_grant(
                    cardholder=cardholder, request_id=request_id, card=card, linked_account=account, actor=request.user
                )
            else:
                answered = None
        except MengkaError as error:
            agreement_request.refresh_from_db()
            if agreement_request.current_status != AgreementRequest.Status.PENDING:
                return _request_closed(request, agreement_request, error)
            form.add_error(None, error.message)
        else:
            if answered is not None:
                return HttpResponseRedirect(return_url_with(answered.return_url, answered))
    return render(request, "payments/agreement_grant.html", {"form": form, "agreement_request": agreement_request})


def _request_closed(
    request: HttpRequest, agreement_request: AgreementRequest | None, error: MengkaError | None
) -> HttpResponse:
    if agreement_request is None:
        status, message = 404, _("This agreement request does not exist.")
    elif agreement_request.current_status == AgreementRequest.Status.EXPIRED:
        status, message = 410, _("This agreement request has expired. Ask the merchant for a new one.")
    else:
        status, message = 409, _("This agreement request has already been answered.")
    return render(
        request,
        "payments/agreement_grant.html",
        {"agreement_request": agreement_request, "closed": message},
        status=status,
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


@replica_view
@cardholder_required
def spending_overview(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The last twelve months by category and by bank: a chart of each (drawn by the page's script from the JSON it
    carries) and a table of each with the same numbers, which is all a reader without scripts needs."""
    glance = spending.spending_at_a_glance(cardholder)
    labels = [date_format(month, "YEAR_MONTH_FORMAT") for month in glance.months]
    charts = []
    sections = []
    for block in glance.currencies:
        views = []
        for kind, series in (("category", block.by_category), ("bank", block.by_bank)):
            canvas = f"spending-{kind}-{block.currency.lower()}"
            charts.append(
                {
                    "canvas": canvas,
                    "months": labels,
                    "unit": block.currency,
                    "exponent": exponent(block.currency),
                    "series": [{"label": s.label, "colour": s.colour, "values": s.monthly} for s in series],
                }
            )
            rows = [
                {"month": label, "cells": [s.monthly[index] for s in series], "total": block.monthly[index]}
                for index, label in enumerate(labels)
            ]
            views.append({"kind": kind, "canvas": canvas, "series": series, "rows": rows})
        sections.append({"spending": block, "by_category": views[0], "by_bank": views[1]})
    return render(
        request,
        "payments/spending.html",
        {
            "glance": glance,
            "sections": sections,
            "first_month": labels[0],
            "last_month": labels[-1],
            "chart_data": {"charts": charts},
        },
    )


# --- the unified statement (统一账单) --------------------------------------------------------------------------------


@require_GET
@replica_view
@cardholder_required
def statement(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """Every payment and refund on the cardholder's cards, newest first, a page at a time (`?after=<cursor>`, kept
    with the filters). Filters that do not parse, or a cursor that is not one, answer 400 with the form's errors."""
    form = StatementFilterForm(request.GET, cardholder=cardholder)
    after = request.GET.get("after")
    cursor = cardholder_statement.Cursor.parse(after) if after else None
    if after and cursor is None:
        form.add_error(None, _("This page link is not valid any more: start again from the newest."))
    if not form.is_valid():
        return render(request, "payments/statement.html", {"form": form, "page": None}, status=400)
    page = cardholder_statement.statement_page(
        cardholder=cardholder, filters=form.filters(), after=cursor, limit=cardholder_statement.PAGE_SIZE
    )
    # The last page says where the statement stops when older months of payments were archived (read on every page,
    # so that a page costs the same queries wherever it falls).
    archived_before = selectors.payments_archived_before()
    return render(
        request,
        "payments/statement.html",
        {"form": form, "page": page, "first_page": cursor is None, "archived_before": archived_before},
    )


@require_GET
@replica_view
@cardholder_required
def statement_csv(request: HttpRequest, cardholder: Cardholder) -> HttpResponseBase:
    """The filtered statement as a CSV file, streamed (any length, constant memory)."""
    form = StatementFilterForm(request.GET, cardholder=cardholder)
    if not form.is_valid():
        return render(request, "payments/statement.html", {"form": form, "page": None}, status=400)
    rows = cardholder_statement.statement_csv(
        cardholder=cardholder, filters=form.filters(), language=translation.get_language()
    )
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="mengka-statement-{stamp}.csv"'
    return response


@require_GET
@replica_view
@cardholder_required
def statement_payment(request: HttpRequest, cardholder: Cardholder, payment_id: str) -> HttpResponse:
    """One line of the statement in detail: the payment, its refunds, its points, its promotions, its history.
    Another cardholder's payment is not found; one of the cardholder's own in a month that was archived says so."""
    detail = cardholder_statement.payment_detail(cardholder=cardholder, payment_id=payment_id)
    if detail is None:
        month = selectors.archived_payment_month(payment_id, livemode=True, cardholder_id=cardholder.pk)
        if month is None:
            raise Http404("No such payment.")
        return render(
            request, "payments/statement_payment_archived.html", {"month": month, "payment_id": payment_id}, status=404
        )
    return render(request, "payments/statement_payment.html", {"detail": detail, "payment": detail.payment})
