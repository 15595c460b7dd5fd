"""Payouts: made for settled batches, sent once per reference through the sponsor bank's channel, resolved by inquiry,
paid or returned (events), sent again after an account change or on request; releases by two operators; the admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import translation

from core.approvals import approval_approve, approval_describe, approval_reject, approvals_waiting_for
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest, AuditLog
from merchants.models import Event, SettlementAccount
from merchants.services import settlement_change_request
from payments import services
from payments.connectors.base import PayoutRequest
from payments.connectors.http import SimulatorConnector
from payments.connectors.inprocess import InProcessConnector
from payments.models import Payout, SettlementBatch
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    BankOperatorFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    bank_operator,
    make_payout,
    make_settlement_batch,
)

pytestmark = pytest.mark.django_db
NOW = timedelta(0)  # poll without waiting for a sender that might still be at work


class Killed(BaseException):
    """The process dies here (not an error anyone catches)."""


def open_account(merchant: Any, last4: str = "4455") -> SettlementAccount:
    return SettlementAccount.objects.create(
        merchant=merchant,
        account_name=merchant.legal_name,
        bank_name="Example Bank",
        account_encrypted="(encrypted)",
        account_last4=last4,
    )


@pytest.fixture
def world(channel_fake: InProcessConnector) -> dict[str, Any]:
    """A merchant with a settlement account, its sponsor bank's payout channel (the in-process fake), a batch owing
    ¥1,234.56 and two operators of the bank."""
    bank = MemberBankFactory()
    merchant = MerchantFactory(sponsor_bank=bank, legal_name="示例餐饮有限公司")
    open_account(merchant)
    channel = ChannelFactory(acquirer=bank, payouts=True, code=f"payout-{bank.pk}")
    batch = make_settlement_batch(merchant, net=123_456)
    return {
        "bank": bank,
        "merchant": merchant,
        "channel": channel,
        "batch": batch,
        "fake": channel_fake,
        "maker": bank_operator(bank),
        "checker": bank_operator(bank),
    }


def reload(row: Any) -> Any:
    row.refresh_from_db()
    return row


def events_of(batch: SettlementBatch) -> list[tuple[str, str]]:
    rows = Event.objects.filter(object_id=batch.public_id).order_by("pk")
    return [(event.type, event.payload["status"]) for event in rows]


# --- making payouts ------------------------------------------------------------------------------------------------


def test_a_settled_batch_gets_one_ready_payout_through_its_sponsors_channel(world: dict[str, Any]) -> None:
    batch = world["batch"]
    report = services.payouts_create()
    assert (report.examined, report.created, report.awaiting_approval) == (1, 1, 0)
    payout = Payout.objects.get(batch=batch)
    assert (payout.status, payout.amount, payout.currency, payout.reference) == (
        "ready", 123_456, "CNY", f"{batch.public_id}-p1",
    )  # fmt: skip
    assert (payout.channel, payout.merchant, payout.account_last4) == (world["channel"], world["merchant"], "4455")
    again = services.payouts_create()
    assert (again.examined, again.created) == (0, 0)
    assert Payout.objects.filter(batch=batch).count() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"net": 0},
        {"net": -500, "status": "carried"},
        {"status": "held", "hold_reason": "merchant frozen"},
        {"status": "building"},
        {"status": "paid"},
    ],
)
def test_only_settled_batches_owing_money_get_a_payout(world: dict[str, Any], change: dict[str, Any]) -> None:
    SettlementBatch.objects.filter(pk=world["batch"].pk).update(**change)
    assert services.payouts_create().created == 0
    assert not Payout.objects.exists()


def test_nothing_is_paid_without_an_account_a_channel_or_while_frozen(world: dict[str, Any]) -> None:
    merchant, channel = world["merchant"], world["channel"]
    merchant.payouts_frozen = True
    merchant.save(update_fields=["payouts_frozen"])
    assert services.payouts_create().counts() == {"frozen": 1}

    merchant.payouts_frozen = False
    merchant.save(update_fields=["payouts_frozen"])
    channel.payouts = False
    channel.save(update_fields=["payouts"])
    ChannelFactory(acquirer=MemberBankFactory(), payouts=True)  # another bank's payout channel is not this merchant's
    assert services.payouts_create().counts() == {"no_channel": 1}

    channel.payouts, channel.sandbox = True, True  # a sandbox channel never carries a live payout
    channel.save(update_fields=["payouts", "sandbox"])
    assert services.payouts_create().counts() == {"no_channel": 1}

    channel.sandbox, channel.currencies = False, ["HKD"]
    channel.save(update_fields=["sandbox", "currencies"])
    assert services.payouts_create().counts() == {"no_channel": 1}

    channel.currencies = ["CNY"]
    channel.save(update_fields=["currencies"])
    SettlementAccount.objects.filter(merchant=merchant).delete()
    assert services.payouts_create().counts() == {"no_account": 1}
    assert not Payout.objects.exists()


# --- sending, inquiring, recording ---------------------------------------------------------------------------------


def test_sent_then_paid_moves_the_batch_and_tells_the_merchant(world: dict[str, Any]) -> None:
    batch, fake = world["batch"], world["fake"]
    services.payouts_create()
    sent = services.payouts_send()
    assert (sent.sent, sent.in_flight) == (1, 1)
    payout = Payout.objects.get(batch=batch)
    assert (payout.status, payout.attempts, reload(batch).status) == ("sent", 1, "paying")
    assert payout.sent_at is not None

    assert services.payouts_poll().examined == 0  # just sent: left to its sender for PAYOUT_INQUIRE_AFTER_SECONDS
    polled = services.payouts_poll(inquire_after=NOW)
    assert (polled.examined, polled.paid) == (1, 1)
    assert (reload(payout).status, reload(batch).status) == ("paid", "paid")
    assert payout.finished_at is not None
    assert events_of(batch) == [("settlement.paid", "paid")]

    for job in (services.payouts_create, services.payouts_send, lambda: services.payouts_poll(inquire_after=NOW)):
        assert job().counts() == {}
    assert fake.payouts_made(batch.public_id) == [(f"{batch.public_id}-p1", 123_456, "paid")]
    assert [call for call in fake.calls if call[0] == "payout"] == [("payout", f"{batch.public_id}-p1")]


@pytest.mark.django_db(transaction=True)
def test_sent_is_committed_before_the_channel_is_called_outside_any_transaction(
    channel_fake: InProcessConnector,
) -> None:
    merchant = MerchantFactory()
    open_account(merchant)
    ChannelFactory(acquirer=merchant.sponsor_bank, payouts=True)
    make_settlement_batch(merchant)
    fake, seen = channel_fake, []
    real = fake.payout

    def payout(request: PayoutRequest) -> Any:
        with connection.cursor() as cursor:  # outside an atomic block this connection autocommits: this is committed
            cursor.execute("SELECT status FROM payments_payout WHERE reference = %s", [request.reference])
            seen.append((cursor.fetchone()[0], connection.in_atomic_block))
        return real(request)

    fake.payout = payout  # type: ignore[method-assign]
    services.payouts_create()
    services.payouts_send()
    assert seen == [("sent", False)]


@pytest.mark.parametrize("fault", ["timeout", "error"])
def test_a_payout_the_channel_never_accepted_is_sent_again_under_its_reference(
    world: dict[str, Any], fault: str
) -> None:
    batch, fake = world["batch"], world["fake"]
    services.payouts_create()
    fake.payout_fault = fault
    report = services.payouts_send()
    assert (report.sent, report.retried) == (1, 1)  # no answer (or an error) → inquiry → not found → ready again
    payout = Payout.objects.get(batch=batch)
    assert (payout.status, payout.attempts) == ("ready", 1)
    assert fake.payouts_made() == []
    assert fake.calls[-1] == ("payout_inquire", payout.reference)

    fake.payout_fault = None
    services.payouts_send()
    services.payouts_poll(inquire_after=NOW)
    assert (reload(payout).status, payout.attempts) == ("paid", 2)
    assert fake.payouts_made() == [(f"{batch.public_id}-p1", 123_456, "paid")]  # the same reference, paid once


def test_an_accepted_payout_whose_answer_was_lost_is_found_by_inquiry_not_sent_twice(world: dict[str, Any]) -> None:
    batch, fake = world["batch"], world["fake"]
    services.payouts_create()
    fake.payout_fault = "accepted_timeout"
    report = services.payouts_send()
    assert (report.sent, report.paid, report.retried) == (1, 1, 0)
    assert reload(batch).status == "paid"
    assert [name for name, _ in fake.calls] == ["payout", "payout_inquire"]
    assert fake.payouts_made() == [(f"{batch.public_id}-p1", 123_456, "paid")]


def test_an_inquiry_that_does_not_answer_leaves_the_payout_sent(world: dict[str, Any]) -> None:
    fake = world["fake"]
    services.payouts_create()
    fake.payout_fault, fake.inquiry_down = "accepted_timeout", True
    assert services.payouts_send().unknown == 1
    assert services.payouts_poll(inquire_after=NOW).unknown == 1
    payout = Payout.objects.get()
    assert (payout.status, payout.attempts) == ("sent", 1)
    fake.inquiry_down = False
    assert services.payouts_poll(inquire_after=NOW).paid == 1
    assert len(fake.payouts_made()) == 1


@pytest.mark.parametrize("dies", ["after the call", "before the call"])
def test_a_sender_killed_before_recording_never_pays_twice(world: dict[str, Any], dies: str) -> None:
    batch, fake = world["batch"], world["fake"]
    real = fake.payout

    def payout(request: PayoutRequest) -> Any:
        if dies == "after the call":
            real(request)
        raise Killed

    fake.payout = payout  # type: ignore[method-assign]
    services.payouts_create()
    with pytest.raises(Killed):
        services.payouts_send()
    fake.payout = real  # type: ignore[method-assign]
    payout_row = Payout.objects.get(batch=batch)
    assert payout_row.status == "sent"  # committed before the call; nothing recorded after it

    # The jobs run again: nothing is made anew, nothing ready; the poll asks and records (or sends it again).
    assert services.payouts_create().created == 0
    assert services.payouts_send().sent == 0
    polled = services.payouts_poll(inquire_after=NOW)
    assert polled.retried == (1 if dies == "before the call" else 0)
    services.payouts_poll(inquire_after=NOW)
    assert (reload(payout_row).status, reload(batch).status) == ("paid", "paid")
    assert fake.payouts_made() == [(f"{batch.public_id}-p1", 123_456, "paid")]
    assert events_of(batch) == [("settlement.paid", "paid")]


def test_the_jobs_run_through_celery_and_record_their_runs(world: dict[str, Any], settings: Any) -> None:
    from core.models import JobRun
    from payments import tasks

    settings.PAYOUT_INQUIRE_AFTER_SECONDS = 0
    assert tasks.payouts_send.delay().get() == {"made": {"created": 1}, "sent": {"sent": 1, "in_flight": 1}}
    assert tasks.payouts_poll.delay().get() == {"paid": 1}
    runs = {run.job: (run.status, run.done, run.counts) for run in JobRun.objects.all()}
    assert runs == {
        "payments.payouts_send": ("succeeded", 2, {"created": 1, "sent": 1, "in_flight": 1}),
        "payments.payouts_poll": ("succeeded", 1, {"paid": 1}),
    }
    assert reload(world["batch"]).status == "paid"


# --- returns -------------------------------------------------------------------------------------------------------


def test_a_returned_payout_leaves_the_batch_owed_until_the_account_is_changed(world: dict[str, Any]) -> None:
    batch, fake, merchant = world["batch"], world["fake"], world["merchant"]
    SettlementAccount.objects.filter(merchant=merchant).update(account_last4="9951")  # the channel: account closed
    services.payouts_create()
    services.payouts_send()
    polled = services.payouts_poll(inquire_after=NOW)
    assert polled.returned == 1
    first = Payout.objects.get(batch=batch)
    assert (first.status, first.return_reason, reload(batch).status) == ("returned", "account_closed", "returned")
    assert events_of(batch) == [("settlement.returned", "returned")]
    assert services.payouts_create().created == 0  # the account has not changed: nothing to send it to

    change = settlement_change_request(
        merchant=merchant,
        account_name=merchant.legal_name,
        bank_name="Another Bank",
        account_number="6222 0200 0011 2233 0088",
        reason="the old account is closed",
        actor=world["maker"],
    )
    approval_approve(request_id=change.pk, checker=world["checker"])
    made = services.payouts_create()
    assert (made.created, made.resent) == (1, 1)
    second = Payout.objects.get(batch=batch, status="ready")
    assert (second.reference, second.amount, second.account_last4) == (f"{batch.public_id}-p2", 123_456, "0088")
    services.payouts_send()
    services.payouts_poll(inquire_after=NOW)
    assert (reload(second).status, reload(batch).status) == ("paid", "paid")
    assert events_of(batch) == [("settlement.returned", "returned"), ("settlement.paid", "paid")]
    assert fake.payouts_made(batch.public_id) == [
        (f"{batch.public_id}-p1", 123_456, "returned"),
        (f"{batch.public_id}-p2", 123_456, "paid"),
    ]


def test_an_account_changed_while_the_payout_was_on_its_way_counts(world: dict[str, Any]) -> None:
    batch, merchant = world["batch"], world["merchant"]
    SettlementAccount.objects.filter(merchant=merchant).update(account_last4="9951")
    services.payouts_create()
    services.payouts_send()  # accepted; the return comes later
    change = settlement_change_request(
        merchant=merchant,
        account_name=merchant.legal_name,
        bank_name="Another Bank",
        account_number="6222 0200 0011 2233 0088",
        reason="the old account is closed",
        actor=world["maker"],
    )
    approval_approve(request_id=change.pk, checker=world["checker"])
    assert services.payouts_poll(inquire_after=NOW).returned == 1
    assert services.payouts_create().resent == 1
    assert Payout.objects.get(batch=batch, status="ready").account_last4 == "0088"


def test_an_operator_flags_a_returned_payout_for_resend(world: dict[str, Any]) -> None:
    batch = world["batch"]
    SettlementAccount.objects.filter(merchant=world["merchant"]).update(account_last4="9952")
    services.payouts_create()
    services.payouts_send()
    services.payouts_poll(inquire_after=NOW)
    returned = Payout.objects.get(batch=batch)
    assert returned.return_reason == "name_mismatch"

    with pytest.raises(PermissionDenied):
        services.payout_resend(payout=returned, operator=bank_operator(MemberBankFactory()))
    resent = services.payout_resend(payout=returned, operator=world["maker"])
    assert (resent.status, resent.reference) == ("ready", f"{batch.public_id}-p2")
    audit = AuditLog.objects.get(action="payout.resend")
    assert (audit.actor, audit.bank_id, audit.object_id) == (world["maker"], world["bank"].pk, str(resent.pk))
    assert audit.after["returned"] == returned.reference
    with pytest.raises(Conflict):
        services.payout_resend(payout=returned, operator=world["maker"])  # one live payout per batch
    with pytest.raises(Conflict):
        services.payout_resend(payout=resent, operator=world["maker"])  # not returned


# --- releases: two operators ---------------------------------------------------------------------------------------


@pytest.fixture
def large(world: dict[str, Any], settings: Any) -> Payout:
    settings.PAYOUT_SECOND_APPROVAL_MINOR = 100_000
    SettlementBatch.objects.filter(pk=world["batch"].pk).update(net=100_001)
    services.payouts_create()
    return Payout.objects.get()


def test_the_threshold_is_strict_and_other_currencies_always_need_two(world: dict[str, Any], settings: Any) -> None:
    settings.PAYOUT_SECOND_APPROVAL_MINOR = 100_000
    merchant = world["merchant"]
    at_threshold = make_settlement_batch(merchant, net=100_000)
    above = make_settlement_batch(merchant, net=100_001)
    hkd = make_settlement_batch(merchant, net=100, currency="HKD")
    SettlementBatch.objects.filter(pk=world["batch"].pk).update(net=50)
    report = services.payouts_create()
    assert (report.created, report.awaiting_approval) == (4, 2)
    statuses = {p.batch_id: p.status for p in Payout.objects.all()}
    assert statuses == {
        world["batch"].pk: "ready",
        at_threshold.pk: "ready",
        above.pk: "pending_approval",
        hkd.pk: "pending_approval",
    }
    assert services.payouts_send().sent == 2  # a payout waiting for its release is not sent


def test_a_large_payout_needs_a_second_operator(world: dict[str, Any], large: Payout) -> None:
    maker, checker = world["maker"], world["checker"]
    with pytest.raises(Conflict) as caught:
        services.payout_release_approve(target=large, operator=checker)
    assert caught.value.code == "payout_release_not_requested"

    auditor = BankOperatorFactory(bank=world["bank"], role="auditor").user
    for outsider in (bank_operator(MemberBankFactory()), auditor, None):
        with pytest.raises(PermissionDenied):
            services.payout_release_request(target=large, operator=outsider)

    request = services.payout_release_request(target=large, operator=maker)
    assert (reload(large).status, request.maker, request.status) == ("pending_approval", maker, "pending")
    assert (request.kind, request.bank_id, request.payload["payout_id"]) == (
        "payments.payout_release",
        world["bank"].pk,
        large.pk,
    )
    assert request in approvals_waiting_for(checker)
    assert request not in approvals_waiting_for(maker)
    with translation.override("en"):
        shown_rows = dict(approval_describe(request))
    assert (shown_rows["payout"], shown_rows["amount"]) == (large.reference, "1,000.01 CNY")
    with pytest.raises(Conflict):
        services.payout_release_request(target=large, operator=checker)  # asked for already
    with pytest.raises(PermissionDenied) as denied:
        services.payout_release_approve(target=large, operator=maker)
    assert denied.value.code == "four_eyes"
    with pytest.raises(PermissionDenied):
        services.payout_release_approve(target=large, operator=bank_operator(MemberBankFactory()))
    assert reload(large).status == "pending_approval"
    assert services.payouts_send().sent == 0

    services.payout_release_approve(target=large, operator=checker)
    request.refresh_from_db()
    assert (reload(large).status, request.status, request.checker) == ("ready", "approved", checker)
    assert (request.result_type, request.result_id) == ("payments.payout", str(large.pk))
    actions = AuditLog.objects.filter(object_type="payments.payout").order_by("pk")
    assert [(a.action, a.actor, a.bank_id) for a in actions] == [("payout.release_approve", checker, world["bank"].pk)]
    assert actions[0].after["requested_by"] == maker.pk
    steps = AuditLog.objects.filter(object_type="core.approvalrequest").order_by("pk")
    assert [(a.action, a.actor) for a in steps] == [("approval.request", maker), ("approval.approve", checker)]
    with pytest.raises(Conflict):
        services.payout_release_approve(target=large, operator=checker)  # released already
    assert services.payouts_send().sent == 1


def test_an_alliance_operator_may_be_the_second(world: dict[str, Any], large: Payout) -> None:
    services.payout_release_request(target=large, operator=world["maker"])
    alliance = AllianceOperatorFactory()
    services.payout_release_approve(target=large, operator=alliance)
    assert reload(large).status == "ready"
    assert ApprovalRequest.objects.get(kind="payments.payout_release").checker == alliance


def test_a_rejected_release_leaves_the_payout_waiting(world: dict[str, Any], large: Payout) -> None:
    request = services.payout_release_request(target=large, operator=world["maker"], reason="the merchant called")
    assert request.reason == "the merchant called"
    approval_reject(request_id=request.pk, checker=world["checker"], reason="not this week")
    assert reload(large).status == "pending_approval"
    assert services.payouts_send().sent == 0
    again = services.payout_release_request(target=large, operator=world["checker"])  # asked again, by anyone
    approval_approve(request_id=again.pk, checker=world["maker"])
    assert reload(large).status == "ready"


def test_applying_a_release_is_atomic(world: dict[str, Any], large: Payout, monkeypatch: Any) -> None:
    """A release that fails while applying leaves the request pending and the payout and batch untouched."""
    from payments.services import payouts

    request = services.payout_release_request(target=large, operator=world["maker"])

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(payouts, "_release_audit", broken)
    with pytest.raises(RuntimeError):
        approval_approve(request_id=request.pk, checker=world["checker"])
    request.refresh_from_db()
    assert (request.status, request.checker, reload(large).status) == ("pending", None, "pending_approval")


def test_a_frozen_merchants_held_batch_is_released_by_two_operators(world: dict[str, Any]) -> None:
    merchant, batch, maker, checker = world["merchant"], world["batch"], world["maker"], world["checker"]
    merchant.payouts_frozen, merchant.frozen_reason = True, "under review"
    merchant.save(update_fields=["payouts_frozen", "frozen_reason"])
    SettlementBatch.objects.filter(pk=batch.pk).update(status="held", hold_reason="merchant frozen: under review")
    assert services.payouts_create().created == 0

    request = services.payout_release_request(target=batch, operator=maker)
    payout = Payout.objects.get(batch=batch)
    assert (payout.status, request.maker, payout.reference) == ("pending_approval", maker, f"{batch.public_id}-p1")
    assert (request.payload["payout_id"], request.payload["held"]) == (payout.pk, True)
    assert reload(batch).status == "held"
    assert services.payouts_send().sent == 0
    with pytest.raises(PermissionDenied):
        services.payout_release_approve(target=batch, operator=maker)
    with pytest.raises(Conflict):
        services.payout_release_request(target=batch, operator=maker)

    services.payout_release_approve(target=batch, operator=checker)
    assert (reload(batch).status, batch.hold_reason) == ("settled", "")
    assert reload(payout).status == "ready"
    assert services.payouts_send().sent == 1  # released: sent although the merchant is still frozen
    assert AuditLog.objects.get(action="payout.release_request").after["held"] == "held"


def test_a_frozen_merchants_unreleased_payout_is_not_sent(world: dict[str, Any]) -> None:
    services.payouts_create()
    world["merchant"].payouts_frozen = True
    world["merchant"].save(update_fields=["payouts_frozen"])
    report = services.payouts_send()
    assert (report.sent, report.frozen) == (0, 1)
    assert Payout.objects.get().status == "ready"


def test_only_a_held_batch_is_released_and_only_where_it_can_be_paid(world: dict[str, Any]) -> None:
    with pytest.raises(Conflict) as caught:
        services.payout_release_request(target=world["batch"], operator=world["maker"])  # settled, not frozen
    assert caught.value.code == "batch_not_held"
    held = make_settlement_batch(world["merchant"], status="held")
    SettlementAccount.objects.filter(merchant=world["merchant"]).delete()
    with pytest.raises(ValidationFailed) as refused:
        services.payout_release_request(target=held, operator=world["maker"])
    assert refused.value.code == "payout_unroutable"
    assert not Payout.objects.exists()


# --- the admin -----------------------------------------------------------------------------------------------------


def login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


PAYOUTS = "admin:payments_payout_changelist"
BATCHES = "admin:payments_settlementbatch_changelist"


def releases() -> Any:
    return ApprovalRequest.objects.filter(kind="payments.payout_release")


def act(user: Any, changelist: str, action: str, *rows: Any, reason: str = "") -> Any:
    """The action on `rows`; with `reason`, as sent from the page that asks for one."""
    form: dict[str, Any] = {"action": action, "_selected_action": [r.pk for r in rows]}
    if reason:
        form.update(post="yes", reason=reason)
    return login(user).post(reverse(changelist), form)


def test_the_admin_shows_a_bank_its_merchants_payouts_only(world: dict[str, Any]) -> None:
    mine = make_payout(world["batch"])
    theirs = make_payout()
    client = login(world["maker"])
    listed = client.get(reverse(PAYOUTS))
    assert set(listed.context["cl"].queryset.values_list("pk", flat=True)) == {mine.pk}
    assert client.get(reverse("admin:payments_payout_change", args=[theirs.pk])).status_code == 404
    batches = client.get(reverse(BATCHES))
    assert set(batches.context["cl"].queryset.values_list("pk", flat=True)) == {world["batch"].pk}


def test_releases_through_the_admin_take_two_operators_of_the_bank(world: dict[str, Any], large: Payout) -> None:
    other = make_payout(make_settlement_batch(net=9_999_999), status="pending_approval")
    asked = act(world["maker"], PAYOUTS, "request_release", large, other)
    assert 'name="reason"' in asked.content.decode()  # a request needs the maker's reason: asked first
    assert not releases().exists()
    act(world["maker"], PAYOUTS, "request_release", large, other, reason="Merchant's account confirmed by phone")
    assert [r.payload["payout_id"] for r in releases()] == [large.pk]  # the other bank's payout is out of reach
    assert releases().get().reason == "Merchant's account confirmed by phone"
    assert world["maker"].username in login(world["checker"]).get(reverse(PAYOUTS)).content.decode()
    act(world["maker"], PAYOUTS, "approve_release", large)
    assert reload(large).status == "pending_approval"  # refused: the maker cannot approve
    act(world["checker"], PAYOUTS, "approve_release", large)
    assert (reload(large).status, releases().get().checker) == ("ready", world["checker"])


def test_auditors_get_no_release_buttons(world: dict[str, Any], large: Payout) -> None:
    auditor = BankOperatorFactory(bank=world["bank"], role="auditor").user
    auditor.groups.add(Group.objects.get(name="Bank auditors"))
    client = login(auditor)
    page = client.get(reverse(PAYOUTS))
    assert page.status_code == 200
    assert "request_release" not in page.content.decode()
    client.post(reverse(PAYOUTS), {"action": "request_release", "_selected_action": [large.pk]})
    assert not releases().exists()


def test_a_held_batch_is_released_from_the_batch_admin(world: dict[str, Any]) -> None:
    batch = world["batch"]
    SettlementBatch.objects.filter(pk=batch.pk).update(status="held", hold_reason="merchant frozen")
    assert 'name="reason"' in act(world["maker"], BATCHES, "release_held", batch).content.decode()
    assert not Payout.objects.filter(batch=batch).exists()  # nothing asked without a reason
    act(world["maker"], BATCHES, "release_held", batch, reason="Freeze lifted by the risk team")
    assert Payout.objects.get(batch=batch).status == "pending_approval"
    assert releases().get().reason == "Freeze lifted by the risk team"
    act(world["maker"], BATCHES, "release_held", batch)  # the same operator again: refused
    assert Payout.objects.get(batch=batch).status == "pending_approval"
    act(world["checker"], BATCHES, "release_held", batch)
    assert (reload(batch).status, Payout.objects.get(batch=batch).status) == ("settled", "ready")


def test_a_returned_payout_is_flagged_for_resend_from_the_admin(world: dict[str, Any]) -> None:
    returned = make_payout(world["batch"], status="returned", return_reason="account_closed")
    SettlementBatch.objects.filter(pk=world["batch"].pk).update(status="returned")
    act(world["maker"], PAYOUTS, "resend", returned)
    resent = Payout.objects.get(batch=world["batch"], status="ready")
    assert resent.reference == f"{world['batch'].public_id}-p2"
    assert AuditLog.objects.filter(action="payout.resend", actor=world["maker"]).count() == 1


# --- against the channel simulator ---------------------------------------------------------------------------------

SIM_CHANNEL = "acq-bank-b"


@pytest.fixture
def sim(sim: Any) -> Any:
    sim.set_faults(SIM_CHANNEL, payout_delay_ms=0)
    return sim


@pytest.fixture
def sim_world(sim: Any) -> dict[str, Any]:
    bank = MemberBankFactory()
    merchant = MerchantFactory(sponsor_bank=bank, legal_name="示例餐饮有限公司")
    open_account(merchant)
    ChannelFactory(acquirer=bank, payouts=True, connector="simulator", remote_id=SIM_CHANNEL, currencies=["CNY", "USD"])
    batch = make_settlement_batch(merchant, net=123_456)
    return {"bank": bank, "merchant": merchant, "batch": batch, "sim": sim}


def payout_rows(sim: Any, reference: str) -> list[str]:
    return [row["outcome"] for row in sim.journal_all(op="payout", reference=reference)]


def test_paid_through_the_simulator(sim_world: dict[str, Any]) -> None:
    sim, batch = sim_world["sim"], sim_world["batch"]
    sim.set_faults(SIM_CHANNEL, payout_delay_ms=3000)
    services.payouts_create()
    assert services.payouts_send().in_flight == 1
    reference = f"{batch.public_id}-p1"
    assert services.payouts_poll(inquire_after=NOW).in_flight == 1  # accepted: the result is not in yet
    sim.set_clock((datetime.now(UTC) + timedelta(seconds=10)).isoformat())
    assert services.payouts_poll(inquire_after=NOW).paid == 1
    assert reload(batch).status == "paid"
    status = sim.payout_status(reference)
    assert (status.state, status.amount, status.account) == (
        "paid", 123_456, {"last4": "4455", "token": "", "name": "示例餐饮有限公司"},
    )  # fmt: skip
    assert payout_rows(sim, reference) == ["ok"]


def test_a_timeout_at_the_simulator_is_inquired_and_never_paid_twice(sim_world: dict[str, Any]) -> None:
    sim, batch = sim_world["sim"], sim_world["batch"]
    reference = f"{batch.public_id}-p1"
    services.payouts_create()
    sim.set_faults(SIM_CHANNEL, timeout_rate=1.0)  # no answer, nothing accepted
    assert services.payouts_send().retried == 1
    assert Payout.objects.get().status == "ready"
    sim.set_faults(SIM_CHANNEL, timeout_rate=0.0, charged_timeout_rate=1.0)  # accepted, the answer lost
    report = services.payouts_send()
    assert (report.sent, report.paid) == (1, 1)
    assert payout_rows(sim, reference) == ["timeout", "accepted_timeout"]
    sim.set_faults(SIM_CHANNEL, charged_timeout_rate=0.0)
    for job in (services.payouts_create, services.payouts_send, lambda: services.payouts_poll(inquire_after=NOW)):
        job()
    assert payout_rows(sim, reference) == ["timeout", "accepted_timeout"]
    assert (Payout.objects.get().status, reload(batch).status) == ("paid", "paid")


@pytest.mark.parametrize("dies", ["after the call", "before the call"])
def test_a_sender_killed_before_recording_is_paid_once_by_the_simulator(
    sim_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, dies: str
) -> None:
    sim, batch = sim_world["sim"], sim_world["batch"]
    reference = f"{batch.public_id}-p1"
    real = SimulatorConnector.payout

    def payout(self: SimulatorConnector, request: PayoutRequest) -> Any:
        if dies == "after the call":
            real(self, request)
        raise Killed

    monkeypatch.setattr(SimulatorConnector, "payout", payout)
    services.payouts_create()
    with pytest.raises(Killed):
        services.payouts_send()
    monkeypatch.setattr(SimulatorConnector, "payout", real)
    assert Payout.objects.get().status == "sent"

    for job in (services.payouts_create, services.payouts_send, lambda: services.payouts_poll(inquire_after=NOW)):
        job()
    assert (Payout.objects.get().status, Payout.objects.count(), reload(batch).status) == ("paid", 1, "paid")
    assert payout_rows(sim, reference) == ["ok"]  # one payout at the channel, under the one reference
    # Sending the same reference yet again (any retry) is answered with that payout, never a second one.
    connector = SimulatorConnector()
    again = connector.payout(
        PayoutRequest(SIM_CHANNEL, reference, 123_456, "CNY", account_last4="4455", account_name="示例餐饮有限公司")
    )
    assert (again.state, payout_rows(sim, reference)) == ("paid", ["ok", "replayed"])


def test_returned_by_the_simulator_then_paid_to_the_new_account(sim_world: dict[str, Any]) -> None:
    sim, batch, merchant, bank = sim_world["sim"], sim_world["batch"], sim_world["merchant"], sim_world["bank"]
    SettlementAccount.objects.filter(merchant=merchant).update(account_last4="9951")
    services.payouts_create()
    assert services.payouts_send().returned == 1
    assert (Payout.objects.get().return_reason, reload(batch).status) == ("account_closed", "returned")
    change = settlement_change_request(
        merchant=merchant,
        account_name=merchant.legal_name,
        bank_name="Another Bank",
        account_number="6222020000112233 4455",
        reason="the old account is closed",
        actor=bank_operator(bank),
    )
    approval_approve(request_id=change.pk, checker=bank_operator(bank))
    services.payouts_create()
    assert services.payouts_send().paid == 1
    assert reload(batch).status == "paid"
    assert events_of(batch) == [("settlement.returned", "returned"), ("settlement.paid", "paid")]
    assert payout_rows(sim, f"{batch.public_id}-p1") == ["ok"]
    assert payout_rows(sim, f"{batch.public_id}-p2") == ["ok"]
    assert (sim.payout_status(f"{batch.public_id}-p1").state, sim.payout_status(f"{batch.public_id}-p2").state) == (
        "returned", "paid",
    )  # fmt: skip


def test_a_payout_the_channel_refuses_is_returned_with_its_code(sim_world: dict[str, Any]) -> None:
    merchant = sim_world["merchant"]
    usd = make_settlement_batch(merchant, net=5_000, currency="USD")  # the simulated channel takes CNY and HKD
    SettlementBatch.objects.filter(pk=sim_world["batch"].pk).update(status="paid")
    services.payouts_create()
    payout = Payout.objects.get(batch=usd)
    services.payout_release_request(target=payout, operator=bank_operator(sim_world["bank"]))
    services.payout_release_approve(target=payout, operator=bank_operator(sim_world["bank"]))
    assert services.payouts_send().returned == 1
    assert (reload(payout).status, payout.return_reason, reload(usd).status) == (
        "returned", "currency_not_supported", "returned",
    )  # fmt: skip
