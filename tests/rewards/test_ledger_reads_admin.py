"""Ledger reads (query counts pinned) and the admin: read-only tables, statement view, adjustments requested
there and approved by a second operator in the approval queue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from core.models import ApprovalRequest
from rewards import selectors
from rewards import services as s
from rewards.models import Entry, LedgerTransaction, Lot
from tests.factories import PASSWORD, CardholderFactory, PointsProgramFactory, bank_operator, card_at

pytestmark = pytest.mark.django_db


def operator_of(bank):
    user = bank_operator(bank)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return user, client


def test_balances_across_programs_with_cny_value(django_assert_num_queries) -> None:
    holder = CardholderFactory()
    a = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    b = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    s.points_earn(cardholder_id=holder.pk, program=a, amount=1000, idempotency_key="a")
    s.points_earn(cardholder_id=holder.pk, program=b, amount=300, idempotency_key="b")
    s.hold_create(cardholder_id=holder.pk, program=b, amount=100, idempotency_key="h")
    with django_assert_num_queries(1):
        balances = selectors.cardholder_balances(cardholder_id=holder.pk)
    by_unit = {row.unit: (row.posted, row.held, row.available, row.value_cny) for row in balances}
    assert by_unit == {a.unit_code: (1000, 0, 1000, Decimal("5.00")), b.unit_code: (300, 100, 200, Decimal("2.00"))}


def test_points_past_their_date_are_not_available_before_the_job_runs(django_assert_num_queries) -> None:
    holder, program = CardholderFactory(), PointsProgramFactory(point_value_cny=Decimal("0.01"))
    s.points_earn(cardholder_id=holder.pk, program=program, amount=300, idempotency_key="old")
    s.points_earn(cardholder_id=holder.pk, program=program, amount=200, idempotency_key="new")
    last_day = dt.date(2030, 3, 31)
    Lot.objects.filter(earned_by__idempotency_key="old").update(expires_on=last_day)
    Lot.objects.filter(earned_by__idempotency_key="new").update(expires_on=dt.date(2031, 3, 31))
    with django_assert_num_queries(1):
        [before] = selectors.cardholder_balances(cardholder_id=holder.pk, on=last_day)
    assert (before.posted, before.expired, before.available, before.value_cny) == (500, 0, 500, Decimal("5.00"))
    next_day = last_day + dt.timedelta(days=1)
    [after] = selectors.cardholder_balances(cardholder_id=holder.pk, on=next_day)
    assert (after.posted, after.expired, after.available, after.value_cny) == (500, 300, 200, Decimal("2.00"))
    # Held points shield the overdue lot, as the expiry does: of 300 overdue, 120 are held and 180 unspendable.
    s.hold_create(cardholder_id=holder.pk, program=program, amount=120, idempotency_key="h")
    [held] = selectors.cardholder_balances(cardholder_id=holder.pk, on=next_day)
    assert (held.held, held.expired, held.available) == (120, 300, 500 - 120 - 180)


def test_statement_keyset_pages_with_running_balance(django_assert_num_queries) -> None:
    holder, program = CardholderFactory(), PointsProgramFactory()
    for n in range(5):
        s.points_earn(cardholder_id=holder.pk, program=program, amount=10 + n, idempotency_key=f"e{n}")
    s.points_redeem(cardholder_id=holder.pk, program=program, amount=20, idempotency_key="r")
    wallet = s.wallet_account(holder.pk, program)
    # The archived months (their tables are read too), then the page: two queries at any depth.
    with django_assert_num_queries(2):
        first = selectors.account_statement(account_id=wallet.pk, limit=4)
    assert [line.balance_after for line in first.lines] == [10, 21, 33, 46]
    with django_assert_num_queries(2):
        second = selectors.account_statement(account_id=wallet.pk, after_id=first.next_after, limit=4)
    assert [(line.kind, line.amount, line.balance_after) for line in second.lines] == [
        ("earn", 14, 60),
        ("spend", -20, 40),
    ]
    assert second.next_after is None


def test_points_expiring_within_30_and_90_days(django_assert_num_queries) -> None:
    holder = CardholderFactory()
    program = PointsProgramFactory(expiry_policy="months_after", expiry_period=1)
    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=70, idempotency_key="a", earned_on=dt.date(2026, 1, 10)
    )
    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=30, idempotency_key="b", earned_on=dt.date(2026, 3, 10)
    )
    with django_assert_num_queries(1):
        soon = selectors.points_expiring(cardholder_id=holder.pk, within_days=30, on=dt.date(2026, 2, 1))
    assert [(e.points, e.first_date) for e in soon] == [(70, dt.date(2026, 2, 10))]
    later = selectors.points_expiring(cardholder_id=holder.pk, within_days=90, on=dt.date(2026, 2, 1))
    assert [(e.points, e.first_date) for e in later] == [(100, dt.date(2026, 2, 10))]


def test_admin_ledger_is_read_only_and_statement_is_scoped() -> None:
    holder, program = CardholderFactory(), PointsProgramFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="e")
    other = PointsProgramFactory()
    s.points_earn(cardholder_id=holder.pk, program=other, amount=10, idempotency_key="o")
    _, client = operator_of(program.bank)
    wallet, foreign = s.wallet_account(holder.pk, program), s.wallet_account(holder.pk, other)
    assert client.get(reverse("admin:rewards_account_add")).status_code == 403
    assert client.post(reverse("admin:rewards_account_delete", args=[wallet.pk]), {"post": "yes"}).status_code == 403
    response = client.get(reverse("admin:rewards_account_statement", args=[wallet.pk]))
    assert response.status_code == 200
    assert [line.balance_after for line in response.context["page"].lines] == [10]
    for cursor in ("²", "9" * 30):  # a digit int() refuses, a number past 64 bits: the first page, not a 500
        page_after = client.get(reverse("admin:rewards_account_statement", args=[wallet.pk]), {"after": cursor})
        assert page_after.status_code == 200
        assert [line.balance_after for line in page_after.context["page"].lines] == [10]
    assert client.get(reverse("admin:rewards_account_statement", args=[foreign.pk])).status_code == 404


def test_admin_ledger_transactions_are_a_bank_operators_own_each_once(admin_client) -> None:
    """A bank operator lists the transactions with an entry on one of their bank's accounts, each once however many of
    its entries are the bank's (an earn's wallet and issuance sub-account); an alliance operator lists every one."""
    holder, program, other = CardholderFactory(), PointsProgramFactory(), PointsProgramFactory()
    first = s.points_earn(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="e1")
    second = s.points_earn(cardholder_id=holder.pk, program=program, amount=20, idempotency_key="e2")
    foreign = s.points_earn(cardholder_id=holder.pk, program=other, amount=30, idempotency_key="o")
    assert Entry.objects.filter(transaction=first, account__bank=program.bank).count() == 2
    _, client = operator_of(program.bank)
    url = reverse("admin:rewards_ledgertransaction_changelist")
    response = client.get(url)
    assert response.status_code == 200
    assert [txn.pk for txn in response.context["cl"].result_list] == [second.pk, first.pk]
    assert response.context["cl"].result_count == 2
    everything = admin_client.get(url).context["cl"].result_list
    assert [txn.pk for txn in everything] == [foreign.pk, second.pk, first.pk]


def test_admin_adjustment_request_then_another_operator_approves() -> None:
    holder, program = CardholderFactory(), PointsProgramFactory()
    card_at(holder, program.bank)
    _maker, maker_client = operator_of(program.bank)
    checker, checker_client = operator_of(program.bank)
    accounts = maker_client.get(reverse("admin:rewards_account_changelist"))
    assert reverse("admin:rewards_account_adjust") in accounts.content.decode()
    response = maker_client.post(
        reverse("admin:rewards_account_adjust"),
        {"cardholder": holder.pk, "program": program.pk, "amount": 40, "reason": "lost earn"},
    )
    request = ApprovalRequest.objects.get()
    page = reverse("admin:core_approvalrequest_change", args=[request.pk])
    assert response.status_code == 302
    assert response["Location"] == page
    # The maker's own page offers only to cancel; a forged approval changes nothing.
    assert maker_client.get(page).context["may_decide"] is False
    maker_client.post(page, {"decision": "approve"})
    request.refresh_from_db()
    assert request.status == "pending"
    assert LedgerTransaction.objects.filter(kind="adjust").count() == 0
    waiting = checker_client.get(reverse("admin:core_approvalrequest_changelist"), {"queue": "waiting"})
    assert [row.pk for row in waiting.context["cl"].result_list] == [request.pk]
    assert checker_client.post(page, {"decision": "approve"}).status_code == 302
    request.refresh_from_db()
    assert (request.status, request.checker) == ("approved", checker)
    assert s.wallet_account(holder.pk, program).posted == 40
