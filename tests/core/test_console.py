"""The operators' dashboard (the admin index): figures within the operator's scope, the bank filter, the tiles'
links, and a query count that does not grow with the data."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from core.console import Section, Tile, register_approval_counter
from members.models import MemberBank
from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory, bank_operator

pytestmark = pytest.mark.django_db
INDEX = "/admin/"


def _login(user: Any) -> Client:
    """Signed in, reading the admin in English (the tests name tiles by their English titles)."""
    client = Client(headers={"accept-language": "en"})
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _tile(response: Any, title: str) -> Tile:
    for section in response.context["console_sections"]:
        section: Section
        for tile in section.tiles:
            if tile.title == title:
                return tile
    raise AssertionError(f"no tile {title!r}")


def _payments(count: int, amount: int) -> Any:
    payment = FACTORIES["payments.paymentintent"]()
    payment.amount = amount
    payment.save(update_fields=["amount"])
    for index in range(count - 1):
        payment.pk = None
        payment.public_id = f"{payment.public_id[:30]}_{index}"
        payment.payment_code = None
        payment.save()
    return payment


def test_bank_operator_sees_their_bank_only_and_alliance_operator_filters_by_bank() -> None:
    ours = _payments(3, 1_000)
    theirs = _payments(2, 5_000)
    with translation.override("en"):
        bank_view = _login(bank_operator(ours.issuer)).get(INDEX)
        assert bank_view.status_code == 200
        today = _tile(bank_view, "Payments today")
        assert today.value == format_cny(3_000)
        assert today.note.startswith("3 payments")
        assert today.url.startswith(reverse("admin:payments_paymentintent_changelist") + "?status=succeeded")
        assert bank_view.context["console_banks"] == []

        alliance = _login(AllianceOperatorFactory())
        everything = alliance.get(INDEX)
        assert _tile(everything, "Payments today").value == format_cny(13_000)
        banks = [bank_id for bank_id, _label in everything.context["console_banks"]]
        assert {ours.issuer_id, theirs.issuer_id} <= set(banks)
        one_bank = alliance.get(INDEX, {"bank": theirs.issuer_id})
        assert _tile(one_bank, "Payments today").value == format_cny(10_000)
        assert one_bank.context["console_bank"] == theirs.issuer_id
        chart = next(s.chart for s in one_bank.context["console_sections"] if s.chart is not None)
        assert chart.series[0][1][-1] == 2  # today's count, the last of 30 days
        assert len(chart.labels) == 30
        # A bank operator cannot look into another bank with ?bank=.
        assert _tile(
            _login(bank_operator(ours.issuer)).get(INDEX, {"bank": theirs.issuer_id}), "Payments today"
        ).value == format_cny(3_000)
    assert b"chart.umd.min.js" in everything.content
    assert b'id="console-apps"' in everything.content  # the stock app list stays below the tiles


def format_cny(minor: int) -> str:
    from core.money import format_minor

    return format_minor(minor, "CNY")


def test_approvals_waiting_counts_each_four_eyes_feature() -> None:
    request = FACTORIES["core.approvalrequest"]()  # a points adjustment waiting in the approval queue
    with translation.override("en"):
        response = _login(bank_operator(MemberBank.objects.get(pk=request.bank_id))).get(INDEX)
    approvals = {label: (count, url) for label, count, url in response.context["console_approvals"]}
    assert approvals["Approval requests"][0] == 1
    assert approvals["Approval requests"][1].endswith("?status=pending")
    # payout releases and write-offs wait in the approval queue: counted there, not on counters of their own
    assert "Payouts to release" not in approvals
    assert "Write-offs" not in approvals


def test_a_registered_counter_shows_on_the_dashboard() -> None:
    register_approval_counter("tests.extra", lambda view: ("Something else", 7, "/admin/"))
    try:
        response = _login(AllianceOperatorFactory()).get(INDEX)
        assert ("Something else", 7, "/admin/") in response.context["console_approvals"]
    finally:
        from core import console

        console._approval_counters.pop("tests.extra")


DASHBOARD_ROWS = ("rewards.voucher", "payments.dispute", "payments.payout", "alliance.clearingposition")


@pytest.mark.parametrize("alliance", [True, False], ids=["alliance", "bank"])
def test_the_dashboard_query_count_does_not_grow_with_the_data(alliance: bool) -> None:
    """Pinned at 5 and 50 rows of what the tiles count: the same number of queries."""
    first = _payments(5, 1_000)
    user = AllianceOperatorFactory() if alliance else bank_operator(first.issuer)
    for label in DASHBOARD_ROWS:
        for _ in range(5):
            FACTORIES[label]()
    client = _login(user)
    client.get(INDEX)  # the first request loads what every process caches (routing configuration)
    with CaptureQueriesContext(connection) as few:
        assert client.get(INDEX).status_code == 200
    _payments(45, 1_000)
    for label in DASHBOARD_ROWS:
        for _ in range(45):
            FACTORIES[label]()
    with CaptureQueriesContext(connection) as many:
        assert client.get(INDEX).status_code == 200
    assert len(many) == len(few), "\n".join(q["sql"][:150] for q in many.captured_queries)


def test_a_cardholders_and_a_merchants_pages_link_to_their_lists_within_scope() -> None:
    payment = FACTORIES["payments.paymentintent"]()
    client = _login(bank_operator(payment.issuer))
    holder = reverse("admin:members_cardholder_change", args=[payment.cardholder_id])
    page = client.get(holder).content.decode()
    links = {
        "members_card": f"?cardholder__id__exact={payment.cardholder_id}",
        "rewards_account": f"?owner_kind=cardholder&amp;owner_id={payment.cardholder_id}",
        "payments_paymentintent": f"?cardholder__id__exact={payment.cardholder_id}",
        "rewards_voucher": f"?cardholder__id__exact={payment.cardholder_id}",
        "payments_dispute": f"?payment__cardholder__id__exact={payment.cardholder_id}",
    }
    for name, query in links.items():
        url = reverse(f"admin:{name}_changelist")
        assert f'href="{url}{query}"' in page, name
        listed = client.get(url + query.replace("&amp;", "&"))
        assert listed.status_code == 200, name  # the filter is accepted, not answered with ?e=1
        assert "e" not in listed.wsgi_request.GET
    payments = client.get(reverse("admin:payments_paymentintent_changelist") + links["payments_paymentintent"])
    assert list(payments.context["cl"].queryset) == [payment]

    merchant = client.get(reverse("admin:merchants_merchant_change", args=[payment.merchant_id])).content.decode()
    for name in ("payments_paymentintent", "payments_settlementbatch", "merchants_apikey"):
        url = reverse(f"admin:{name}_changelist") + f"?merchant__id__exact={payment.merchant_id}"
        assert f'href="{url}"' in merchant, name
        assert client.get(url).status_code == 200, name
