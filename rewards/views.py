"""Rewards: the cardholder portal's points pages — every programme's balance at once, points expiring, statements."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from core.text import id_or_none
from members.models import Cardholder
from members.portal import cardholder_required

from . import selectors
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
    return render(
        request,
        "rewards/points.html",
        {"balances": selectors.cardholder_balances(cardholder_id=cardholder.pk, on=on), "expiring": expiring},
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
