"""Who sees settlements in the admin: batches, lines, split instructions, the daily report per sponsor bank."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.models import AuditLog
from merchants.models import Merchant
from payments import admin as payments_admin
from payments.models import ReservePolicy
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    MemberBankFactory,
    MerchantFactory,
    bank_operator,
    make_settlement,
)

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 12, 7)


def _login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _lines(count: int) -> list[dict[str, Any]]:
    return [{"amount": 1_000 * (n + 1), "fee": 600 * (n + 1) + 1} for n in range(count)]


# --- batches, lines, splits -------------------------------------------------------------------------------------


def test_a_bank_operator_sees_only_its_merchants_batches() -> None:
    mine, theirs = MemberBankFactory(), MemberBankFactory()
    own = make_settlement(MerchantFactory(sponsor_bank=mine), lines=_lines(1))
    other = make_settlement(MerchantFactory(sponsor_bank=theirs), lines=_lines(1))
    operator = _login(bank_operator(mine))
    listing = operator.get(reverse("admin:payments_settlementbatch_changelist"))
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset.values_list("pk", flat=True)) == [own.pk]
    for name in ("change", "lines"):
        assert operator.get(reverse(f"admin:payments_settlementbatch_{name}", args=[own.pk])).status_code == 200
        assert operator.get(reverse(f"admin:payments_settlementbatch_{name}", args=[other.pk])).status_code == 404
    assert operator.get(reverse("admin:payments_settlementbatch_lines_csv", args=[other.pk])).status_code == 404
    alliance = _login(AllianceOperatorFactory())
    listing = alliance.get(reverse("admin:payments_settlementbatch_changelist"))
    assert set(listing.context["cl"].queryset.values_list("pk", flat=True)) == {own.pk, other.pk}


def test_the_batch_page_is_read_only_shows_money_and_its_split_instructions() -> None:
    bank = MemberBankFactory()
    batch = make_settlement(
        MerchantFactory(sponsor_bank=bank),
        lines=[{"amount": 128_800, "fee": 77_281}],
        splits=[{"party": "merchant", "amount": 12_802_719}, {"party": "acquirer", "bank": bank, "amount": 77_281}],
    )
    operator = _login(bank_operator(bank))
    page = operator.get(reverse("admin:payments_settlementbatch_change", args=[batch.pk]))
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    html = page.content.decode()
    assert "1,288.00 CNY" in html  # gross
    assert "7.7281 CNY" in html  # the fees before rounding: hundredths of a minor unit
    assert "1,280.27 CNY" in html  # net: 1288.00 − 7.73
    assert "128,027.19" not in html  # hundredths never shown as minor units
    assert "1,280.2719 CNY" in html  # the merchant's split, in hundredths
    assert reverse("admin:payments_settlementbatch_lines", args=[batch.pk]) in html
    assert reverse("admin:payments_settlementbatch_lines_csv", args=[batch.pk]) in html
    changelist = operator.get(reverse("admin:payments_settlementbatch_changelist"))
    assert reverse("admin:payments_settlementbatch_report") in changelist.content.decode()


def test_lines_are_shown_a_page_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payments_admin, "LINES_PER_PAGE", 2)
    bank = MemberBankFactory()
    batch = make_settlement(MerchantFactory(sponsor_bank=bank), lines=_lines(5))
    operator = _login(bank_operator(bank))
    url = reverse("admin:payments_settlementbatch_lines", args=[batch.pk])
    seen, after = [], None
    for _ in range(3):
        page = operator.get(url, {"after": after} if after else {})
        assert page.status_code == 200
        seen += [row["line"].id for row in page.context["rows"]]
        after = page.context["next_after"]
        if after is None:
            break
    assert seen == ["stll_1", "stll_2", "stll_3", "stll_4", "stll_5"]
    first = operator.get(url).context["rows"][0]
    assert (first["amount"], first["fee"]) == ("10.00 CNY", "0.0601 CNY")


def test_operators_download_a_batchs_lines_as_csv() -> None:
    bank = MemberBankFactory()
    batch = make_settlement(MerchantFactory(sponsor_bank=bank), lines=[*_lines(2), {"kind": "refund", "amount": -500}])
    response = _login(bank_operator(bank)).get(reverse("admin:payments_settlementbatch_lines_csv", args=[batch.pk]))
    assert response.status_code == 200
    assert response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:2] == ["id", "kind"]
    assert [(row[0], row[1], row[5], row[6]) for row in rows[1:]] == [
        ("stll_1", "payment", "1000", "6.01"),
        ("stll_2", "payment", "2000", "12.01"),
        ("stll_3", "refund", "-500", "0.00"),
    ]


# --- the daily report -------------------------------------------------------------------------------------------


@pytest.fixture
def two_banks() -> dict[str, Any]:
    """Bank A: three merchants' batches on DAY (settled, held twice for two reasons, paid, returned), one on the day
    before and a test-mode one; bank B: one settled batch on DAY."""
    bank_a, bank_b = MemberBankFactory(code="BKA"), MemberBankFactory(code="BKB")
    one, two, three = (MerchantFactory(sponsor_bank=bank_a) for _ in range(3))
    on = {"settle_on": DAY}
    make_settlement(one, lines=[{"amount": 10_000, "fee": 6_025}, {"kind": "refund", "amount": -1_000}], **on)
    make_settlement(
        two, lines=[{"amount": 20_000, "fee": 12_050, "promotion_charge": 300}], status="held",
        hold_reason="payouts frozen: chargebacks", reserve_held=1_000, **on,
    )  # fmt: skip
    make_settlement(three, lines=[{"amount": 5_000}], status="held", hold_reason="payouts frozen: KYC", **on)
    make_settlement(one, lines=[{"amount": 7_000, "cofunding_credit": 100}, {"kind": "reserve_release", "amount": 50}],
                    status="paid", **on)  # fmt: skip
    make_settlement(two, lines=[{"amount": 3_000}], status="returned", **on)
    make_settlement(one, lines=[{"amount": 99_999}], settle_on=DAY - dt.timedelta(days=1))
    make_settlement(one, lines=[{"amount": 88_888}], livemode=False, **on)
    make_settlement(MerchantFactory(sponsor_bank=bank_b), lines=[{"amount": 4_000, "fee": 2_400}], **on)
    return {"a": bank_a, "b": bank_b}


def _report(client: Client, **params: Any) -> Any:
    return client.get(reverse("admin:payments_settlementbatch_report"), params)


def _figures(response: Any) -> dict[tuple[str, str], list[Any]]:
    return {
        (table["bank"].split()[0], row["code"]): [row["batches"], row["payments"], *row["amounts"],
                                                         row["hold_reasons"]]
        for table in response.context["tables"]
        for row in table["rows"]
    }  # fmt: skip


def test_the_report_sums_each_banks_batches_by_status_exactly(two_banks: dict[str, Any]) -> None:
    response = _report(_login(AllianceOperatorFactory()), settle_on=DAY.isoformat())
    assert response.status_code == 200
    cny = "{:,.2f} CNY".format
    assert _figures(response) == {
        # batches, payments, gross, refunds, fees, promotion charges, co-funding, reserve held, reserve released,
        # carried out, net, why held
        ("BKA", "held"): [
            2, 2, cny(250), cny(0), cny(1.21), cny(3), cny(0), cny(10), cny(0), cny(0), cny(235.79),
            ["payouts frozen: KYC", "payouts frozen: chargebacks"],
        ],
        ("BKA", "paid"): [1, 1, cny(70), cny(0), cny(0), cny(0), cny(1), cny(0), cny(0.5), cny(0), cny(71.5), []],
        ("BKA", "returned"): [1, 1, cny(30), cny(0), cny(0), cny(0), cny(0), cny(0), cny(0), cny(0), cny(30), []],
        ("BKA", "settled"): [
            1, 1, cny(100), cny(10), cny(0.6), cny(0), cny(0), cny(0), cny(0), cny(0), cny(89.4), [],
        ],
        ("BKA", "total"): [
            5, 5, cny(450), cny(10), cny(1.81), cny(3), cny(1), cny(10), cny(0.5), cny(0), cny(426.69),
            ["payouts frozen: KYC", "payouts frozen: chargebacks"],
        ],
        ("BKB", "settled"): [1, 1, cny(40), cny(0), cny(0.24), cny(0), cny(0), cny(0), cny(0), cny(0), cny(39.76), []],
        ("BKB", "total"): [1, 1, cny(40), cny(0), cny(0.24), cny(0), cny(0), cny(0), cny(0), cny(0), cny(39.76), []],
    }  # fmt: skip


def test_a_bank_operator_reports_only_on_its_own_bank(two_banks: dict[str, Any]) -> None:
    response = _report(_login(bank_operator(two_banks["b"])), settle_on=DAY.isoformat())
    assert {bank for bank, _ in _figures(response)} == {"BKB"}
    assert "BKA" not in response.content.decode()


def test_the_report_is_one_aggregate_query(two_banks: dict[str, Any]) -> None:
    client = _login(AllianceOperatorFactory())
    with CaptureQueriesContext(connection) as queries:
        assert _report(client, settle_on=DAY.isoformat()).status_code == 200
    batch_queries = [query["sql"] for query in queries.captured_queries if "settlementbatch" in query["sql"]]
    assert len(batch_queries) == 1
    assert "GROUP BY" in batch_queries[0]


def test_the_report_defaults_to_today_live_and_shows_test_mode_on_request(two_banks: dict[str, Any]) -> None:
    client = _login(AllianceOperatorFactory())
    today = _report(client)
    assert (today.context["day"], today.context["livemode"]) == (timezone.localdate(), True)
    merchant = Merchant.objects.filter(sponsor_bank=two_banks["a"]).first()
    make_settlement(merchant, lines=[{"amount": 1_234}], settle_on=today.context["day"])
    assert _figures(_report(client))[("BKA", "total")][2] == "12.34 CNY"
    test_mode = _figures(_report(client, settle_on=DAY.isoformat(), mode="test"))
    assert test_mode[("BKA", "total")][:3] == [1, 1, "888.88 CNY"]


def test_the_report_downloads_as_csv(two_banks: dict[str, Any]) -> None:
    response = _report(_login(bank_operator(two_banks["a"])), settle_on=DAY.isoformat(), csv="1")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="settlements-{DAY.isoformat()}.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "bank", "currency", "status", "batches", "payments", "gross", "refunds", "fees", "promotion_charges",
        "cofunding_credits", "reserve_held", "reserve_released", "carried_out", "net", "hold_reasons",
    ]  # fmt: skip
    bank = str(two_banks["a"])
    assert rows[1:] == [
        [bank, "CNY", "held", "2", "2", "250.00", "0.00", "1.21", "3.00", "0.00", "10.00", "0.00", "0.00", "235.79",
         "payouts frozen: KYC; payouts frozen: chargebacks"],
        [bank, "CNY", "paid", "1", "1", "70.00", "0.00", "0.00", "0.00", "1.00", "0.00", "0.50", "0.00", "71.50", ""],
        [bank, "CNY", "returned", "1", "1", "30.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "30.00",
         ""],
        [bank, "CNY", "settled", "1", "1", "100.00", "10.00", "0.60", "0.00", "0.00", "0.00", "0.00", "0.00", "89.40",
         ""],
        [bank, "CNY", "total", "5", "5", "450.00", "10.00", "1.81", "3.00", "1.00", "10.00", "0.50", "0.00",
         "426.69", "payouts frozen: KYC; payouts frozen: chargebacks"],
    ]  # fmt: skip


def test_the_report_needs_a_role() -> None:
    from tests.factories import StaffFactory

    assert _report(_login(StaffFactory())).status_code == 403


# --- reserve policies ---------------------------------------------------------------------------------------------


def test_banks_read_reserve_policies_and_the_alliance_sets_them() -> None:
    policy = ReservePolicy.objects.create(risk_grade="high", percent="10.00", hold_working_days=90)
    change = reverse("admin:payments_reservepolicy_change", args=[policy.pk])
    operator = _login(bank_operator(MemberBankFactory()))
    assert operator.get(reverse("admin:payments_reservepolicy_changelist")).status_code == 200
    assert operator.get(change).status_code == 200
    data = {"risk_grade": "high", "percent": "1.00", "hold_working_days": 1}
    assert operator.post(change, data).status_code == 403
    policy.refresh_from_db()
    assert (str(policy.percent), policy.hold_working_days) == ("10.00", 90)

    alliance_user = AllianceOperatorFactory()
    assert _login(alliance_user).post(change, data).status_code == 302
    policy.refresh_from_db()
    assert (str(policy.percent), policy.hold_working_days) == ("1.00", 1)
    audit = AuditLog.objects.get(action="admin.change", object_type="payments.reservepolicy")
    assert (audit.actor, audit.before["percent"], audit.after["percent"]) == (alliance_user, "10.00", "1.00")
