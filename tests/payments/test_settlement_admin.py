"""Who sees settlements in the admin — batches, lines, split instructions, the daily report per sponsor bank — and
a merchant's settlement terms: cycle and risk grade edited as any field, a freeze at once, its release by a second
operator."""

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

from core.approvals import approval_approve
from core.errors import PermissionDenied
from core.models import ApprovalRequest, AuditLog
from merchants import services as merchant_services
from merchants.models import Merchant
from payments import admin as payments_admin
from payments.models import ReservePolicy, SettlementBatch
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    MemberBankFactory,
    MerchantFactory,
    bank_operator,
    make_settlement,
)

pytestmark = pytest.mark.django_db

DAY = dt.date(2025, 12, 8)  # a Monday, a year from the days the tests run (the report defaults to today)


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
    amount, fee = rows[0].index("amount"), rows[0].index("fee")
    assert [(row[0], row[1], row[amount], row[fee]) for row in rows[1:]] == [
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
    policy, _ = ReservePolicy.objects.update_or_create(
        risk_grade="high", defaults={"percent": "10.00", "hold_working_days": 90}
    )  # seeded by a migration
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


# --- merchant terms and the payout freeze -------------------------------------------------------------------------


def _merchant_form(client: Client, merchant: Merchant) -> dict[str, Any]:
    """The merchant's change form as the page renders it: field values and the hidden initial values."""
    page = client.get(reverse("admin:merchants_merchant_change", args=[merchant.pk]))
    assert page.status_code == 200
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or value is False:
            value = ""
        if value is True:
            value = "on"
        data[name] = value
        if field.show_hidden_initial:
            data[f"initial-{name}"] = form[name].initial
    return {name: value for name, value in data.items() if value != ""}


def _save(client: Client, merchant: Merchant, data: dict[str, Any]) -> Any:
    return client.post(reverse("admin:merchants_merchant_change", args=[merchant.pk]), data)


@pytest.fixture
def sponsor() -> Any:
    return MemberBankFactory()


@pytest.fixture
def merchant(sponsor: Any) -> Merchant:
    return MerchantFactory(sponsor_bank=sponsor)


def test_the_sponsors_operators_edit_cycle_and_risk_grade_audited(sponsor: Any, merchant: Merchant) -> None:
    user = bank_operator(sponsor)
    client = _login(user)
    data = {**_merchant_form(client, merchant), "settlement_cycle": "t0", "risk_grade": "high"}
    response = _save(client, merchant, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    merchant.refresh_from_db()
    assert (merchant.settlement_cycle, merchant.risk_grade) == ("t0", "high")
    audit = AuditLog.objects.get(action="admin.change", object_type="merchants.merchant")
    assert audit.actor == user
    assert audit.bank_id == sponsor.pk
    assert (audit.before["settlement_cycle"], audit.after["settlement_cycle"]) == ("t1", "t0")
    assert (audit.before["risk_grade"], audit.after["risk_grade"]) == ("low", "high")

    outsider = _login(bank_operator(MemberBankFactory()))
    assert _save(outsider, merchant, {**data, "risk_grade": "low"}).status_code == 404
    merchant.refresh_from_db()
    assert merchant.risk_grade == "high"


def test_a_freeze_needs_a_reason_and_applies_at_once(sponsor: Any, merchant: Merchant) -> None:
    user = bank_operator(sponsor)
    client = _login(user)
    data = {**_merchant_form(client, merchant), "payouts_frozen": "on"}
    refused = _save(client, merchant, data)
    assert refused.status_code == 200
    assert "frozen_reason" in refused.context["adminform"].form.errors
    merchant.refresh_from_db()
    assert merchant.payouts_frozen is False

    assert _save(client, merchant, {**data, "frozen_reason": "chargebacks under review"}).status_code == 302
    merchant.refresh_from_db()
    assert (merchant.payouts_frozen, merchant.frozen_reason) == (True, "chargebacks under review")
    audit = AuditLog.objects.get(action="merchant.payouts_freeze")
    assert (audit.actor, audit.bank_id) == (user, sponsor.pk)
    assert audit.before == {"payouts_frozen": False, "frozen_reason": ""}
    assert audit.after["payouts_frozen"] is True


def _frozen(merchant: Merchant, actor: Any) -> Merchant:
    return merchant_services.payouts_freeze(merchant_id=merchant.pk, reason="chargebacks under review", actor=actor)


def _decide(client: Client, request: ApprovalRequest, decision: str, reason: str = "") -> Any:
    page = reverse("admin:core_approvalrequest_change", args=[request.pk])
    return client.post(page, {"decision": decision, "reason": reason})


def _unfreezes() -> Any:
    return ApprovalRequest.objects.filter(kind=merchant_services.PAYOUTS_UNFREEZE)


def test_unfreezing_takes_a_second_operator(sponsor: Any, merchant: Merchant) -> None:
    first, second = bank_operator(sponsor), bank_operator(sponsor)
    _frozen(merchant, first)
    asker = _login(first)
    data = {**_merchant_form(asker, merchant), "unfreeze_note": "cleared by risk"}
    data.pop("payouts_frozen")  # unticked
    assert _save(asker, merchant, data).status_code == 302
    merchant.refresh_from_db()
    assert merchant.payouts_frozen is True  # nothing is released yet
    request = _unfreezes().get()
    assert (request.status, request.maker, request.reason) == ("pending", first, "cleared by risk")
    assert request.payload == {"merchant_id": merchant.pk, "frozen_reason": "chargebacks under review"}
    assert request.bank_id == sponsor.pk

    _decide(asker, request, "approve")  # the asker cannot approve their own request
    merchant.refresh_from_db()
    request.refresh_from_db()
    assert (merchant.payouts_frozen, request.status) == (True, "pending")

    outsider = _login(bank_operator(MemberBankFactory()))  # another bank's operator does not even see it
    assert _decide(outsider, request, "approve").status_code == 404
    merchant.refresh_from_db()
    assert merchant.payouts_frozen is True

    assert _decide(_login(second), request, "approve").status_code == 302
    merchant.refresh_from_db()
    request.refresh_from_db()
    assert (merchant.payouts_frozen, merchant.frozen_reason) == (False, "")
    assert (request.status, request.checker) == ("approved", second)
    assert (request.result_type, request.result_id) == ("merchants.merchant", str(merchant.pk))
    audit = AuditLog.objects.get(action="merchant.payouts_unfreeze")
    assert (audit.actor, audit.bank_id) == (second, sponsor.pk)
    assert audit.before == {"payouts_frozen": True, "frozen_reason": "chargebacks under review"}
    assert audit.after["requested_by"] == first.pk
    assert AuditLog.objects.filter(action="approval.request", actor=first, bank_id=sponsor.pk).count() == 1


def test_unticking_without_saying_why_asks_nothing(sponsor: Any, merchant: Merchant) -> None:
    first = bank_operator(sponsor)
    _frozen(merchant, first)
    client = _login(first)
    data = _merchant_form(client, merchant)
    data.pop("payouts_frozen")
    refused = _save(client, merchant, data)
    assert refused.status_code == 200
    assert "unfreeze_note" in refused.context["adminform"].form.errors
    assert not _unfreezes().exists()
    assert Merchant.objects.get(pk=merchant.pk).payouts_frozen is True


def test_an_auditor_cannot_release_a_freeze(sponsor: Any, merchant: Merchant) -> None:
    from django.contrib.auth.models import Group

    from core.scoping import BANK_AUDITORS
    from members.models import BankOperator
    from tests.factories import BankOperatorFactory, StaffFactory

    _frozen(merchant, None)
    request = merchant_services.payouts_unfreeze_request(
        merchant_id=merchant.pk, note="cleared", actor=bank_operator(sponsor)
    )
    auditor = StaffFactory()
    auditor.groups.add(Group.objects.get(name=BANK_AUDITORS))
    BankOperatorFactory(user=auditor, bank=sponsor, role=BankOperator.Role.AUDITOR)
    _decide(_login(auditor), request, "approve")
    merchant.refresh_from_db()
    request.refresh_from_db()
    assert (merchant.payouts_frozen, request.status) == (True, "pending")
    with pytest.raises(PermissionDenied):
        merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="again", actor=auditor)


def test_a_page_opened_before_a_freeze_neither_undoes_nor_asks_to_undo_it(sponsor: Any, merchant: Merchant) -> None:
    client = _login(bank_operator(sponsor))
    stale = _merchant_form(client, merchant)  # opened while not frozen
    _frozen(merchant, bank_operator(sponsor))
    assert _save(client, merchant, {**stale, "display_name": "Renamed"}).status_code == 302
    merchant.refresh_from_db()
    assert (merchant.display_name, merchant.payouts_frozen) == ("Renamed", True)
    assert merchant.frozen_reason == "chargebacks under review"
    assert not _unfreezes().exists()


def test_a_new_freeze_withdraws_a_pending_release(sponsor: Any, merchant: Merchant) -> None:
    first, second = bank_operator(sponsor), bank_operator(sponsor)
    _frozen(merchant, first)
    request = merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="cleared", actor=first)
    merchant_services.payouts_freeze(merchant_id=merchant.pk, reason="new fraud alert", actor=first)
    request.refresh_from_db()
    assert request.status == "cancelled"
    assert AuditLog.objects.get(action="merchant.payouts_freeze", after__frozen_reason="new fraud alert").after[
        "unfreeze_requests_withdrawn"
    ] == [request.pk]
    _decide(_login(second), request, "approve")
    merchant.refresh_from_db()
    assert (merchant.payouts_frozen, merchant.frozen_reason) == (True, "new fraud alert")


def test_a_release_is_asked_for_once_and_rejected(sponsor: Any, merchant: Merchant) -> None:
    from core.errors import Conflict

    first, second = bank_operator(sponsor), bank_operator(sponsor)
    with pytest.raises(Conflict):  # not frozen
        merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="please", actor=first)
    assert not _unfreezes().exists()
    _frozen(merchant, first)
    request = merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="please", actor=first)
    with pytest.raises(Conflict) as again:
        merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="again", actor=second)
    assert again.value.code == "unfreeze_pending"
    assert _unfreezes().count() == 1
    assert _decide(_login(second), request, "reject", "still under review").status_code == 302
    request.refresh_from_db()
    merchant.refresh_from_db()
    assert (request.status, request.checker, merchant.payouts_frozen) == ("rejected", second, True)


def test_the_mechanism_refuses_the_asker_as_approver(sponsor: Any, merchant: Merchant) -> None:
    first, alliance = bank_operator(sponsor), AllianceOperatorFactory()
    _frozen(merchant, first)
    request = merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="cleared", actor=first)
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=first)
    assert Merchant.objects.get(pk=merchant.pk).payouts_frozen is True
    assert SettlementBatch.objects.count() == 0
    approval_approve(request_id=request.pk, checker=alliance)  # an alliance operator may check a bank's request
    assert Merchant.objects.get(pk=merchant.pk).payouts_frozen is False


def test_the_dashboard_counts_a_waiting_release_in_the_approval_queue(sponsor: Any, merchant: Merchant) -> None:
    first = bank_operator(sponsor)
    _frozen(merchant, first)
    merchant_services.payouts_unfreeze_request(merchant_id=merchant.pk, note="cleared", actor=first)
    response = _login(bank_operator(sponsor)).get("/admin/")
    counts = {url.split("?")[0]: count for _label, count, url in response.context["console_approvals"]}
    assert counts[reverse("admin:core_approvalrequest_changelist")] == 1
    assert not [url for url in counts if "unfreeze" in url]  # no counter of its own any more
