"""Risk before routing: limits by tier and verification level, velocity, blocked lists, and the review queue (two
different operators release a payment at or above the second-approval threshold)."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.text import capfirst

from core.approvals import approval_approve, approval_describe, approval_reject, approvals_waiting_for
from core.errors import Conflict, PermissionDenied
from core.models import ApprovalRequest, AuditLog
from payments import routing, services
from payments.models import PaymentAttempt, PaymentIntent, RiskBlock
from payments.risk import RedisCounters
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    StaffFactory,
    make_risk_rule,
)
from tests.i18n import shown

pytestmark = pytest.mark.django_db


_keys = itertools.count()
Status = PaymentIntent.Status


def key() -> str:
    return f"risk-{next(_keys)}"


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, tier="standard", earning_rates={"other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="other")
    channel = ChannelFactory(acquirer=acquirer)
    return {"card": card, "merchant": merchant, "channel": channel, "fake": channel_fake}


def pay(world: dict[str, Any], amount: int, *, card: Any = None, **kw: Any) -> PaymentIntent:
    card = card or world["card"]
    return services.payment_create(
        merchant=kw.pop("merchant", world["merchant"]),
        cardholder=card.cardholder,
        card=card,
        amount=amount,
        currency="CNY",
        idempotency_key=key(),
        confirm=True,
        **kw,
    )


def test_single_amount_limit_by_card_tier_blocks_before_any_channel_is_called(world: dict[str, Any]) -> None:
    rule = make_risk_rule(name="standard cap", kind="amount", threshold=50_000, card_tier="standard")
    make_risk_rule(name="gold cap", kind="amount", threshold=10, card_tier="gold")  # does not apply
    assert pay(world, 50_000).status == Status.SUCCEEDED
    blocked = pay(world, 50_001)
    assert blocked.status == Status.FAILED
    assert blocked.failure_code == "risk_blocked"
    assert "standard cap" in blocked.failure_message
    assert blocked.risk_outcome == "block"
    assert blocked.risk_reasons == [
        {
            "code": "amount_limit",
            "message": "standard cap: 50001 is above the limit 50000.",
            "action": "block",
            "rule": rule.pk,
        }
    ]
    assert not PaymentAttempt.objects.filter(intent=blocked).exists()
    assert not blocked.routing_decisions.exists()


def test_daily_cap_for_payment_codes_by_verification_level_and_blocked_payments_do_not_count(
    world: dict[str, Any],
) -> None:
    make_risk_rule(
        name="basic code daily",
        kind="total",
        subject="cardholder",
        window="day",
        threshold=1_000,
        method="payment_code",
        verification_level=1,
    )
    assert world["card"].cardholder.verification_level == 1
    assert pay(world, 600, method="payment_code").status == Status.SUCCEEDED
    assert pay(world, 500, method="payment_code").failure_code == "risk_blocked"
    assert pay(world, 400, method="payment_code").status == Status.SUCCEEDED  # 600 + 400 = the cap exactly
    assert pay(world, 5_000, method="card").status == Status.SUCCEEDED  # the cap is for codes only
    other = CardFactory(product=world["card"].product, cardholder__verification_level=2)
    assert pay(world, 5_000, card=other, method="payment_code").status == Status.SUCCEEDED


def test_velocity_count_per_card_per_minute_sends_to_review(world: dict[str, Any]) -> None:
    make_risk_rule(name="3 a minute", kind="count", subject="card", window="minute", threshold=3, action="review")
    outcomes = [pay(world, 1_000).risk_outcome for _ in range(4)]
    assert outcomes == ["allow", "allow", "allow", "review"]


def test_velocity_per_merchant_counts_every_card(world: dict[str, Any]) -> None:
    make_risk_rule(name="merchant hour", kind="total", subject="merchant", window="hour", threshold=2_500)
    assert pay(world, 1_000).status == Status.SUCCEEDED
    assert pay(world, 1_000, card=CardFactory(product=world["card"].product)).status == Status.SUCCEEDED
    assert pay(world, 1_000, card=CardFactory(product=world["card"].product)).failure_code == "risk_blocked"


def test_test_mode_payments_count_apart_from_live_ones(world: dict[str, Any]) -> None:
    ChannelFactory(acquirer=world["channel"].acquirer, sandbox=True)  # where test-mode payments go
    make_risk_rule(name="merchant hour", kind="count", subject="merchant", window="hour", threshold=2)
    assert [pay(world, 1_000, livemode=False).status for _ in range(3)] == [
        Status.SUCCEEDED,
        Status.SUCCEEDED,
        Status.FAILED,  # the rule holds in test mode too
    ]
    # The sandbox's three payments used none of the live limit.
    assert [pay(world, 1_000).status for _ in range(3)] == [Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED]


@pytest.mark.parametrize("kind", ["card_fingerprint", "merchant", "device"])
def test_blocked_lists(world: dict[str, Any], kind: str) -> None:
    value = {"card_fingerprint": world["card"].fingerprint, "merchant": world["merchant"].code, "device": "dev-1"}[kind]
    RiskBlock.objects.create(kind=kind, value=value, reason="test")
    intent = pay(world, 1_000, device_id="dev-1")
    assert (intent.status, intent.failure_code) == (Status.FAILED, "risk_blocked")
    assert [reason["code"] for reason in intent.risk_reasons] == [f"blocked_{kind}"]
    assert pay(world, 1_000, device_id="dev-2", card=CardFactory(), merchant=MerchantFactory()).status == (
        Status.SUCCEEDED
    )


def test_a_block_and_its_removal_take_effect_with_the_configuration_cached(
    world: dict[str, Any], settings: Any
) -> None:
    settings.ROUTING_CONFIG_TTL = 60  # as in production: the blocked lists live in the cached configuration
    routing.load_config(force=True)  # this test's channels, not an earlier test's
    assert pay(world, 1_000).status == Status.SUCCEEDED  # warms the cache without the block
    block = RiskBlock.objects.create(kind="merchant", value=world["merchant"].code, reason="test")
    assert pay(world, 1_000).failure_code == "risk_blocked"
    RiskBlock.objects.filter(pk=block.pk).delete()  # a bulk delete, as the admin's action does
    assert pay(world, 1_000).status == Status.SUCCEEDED


@pytest.fixture
def held(world: dict[str, Any]) -> PaymentIntent:
    make_risk_rule(name="big", kind="amount", threshold=10_000, action="review")
    intent = pay(world, 20_000)
    assert (intent.status, intent.risk_review, intent.risk_outcome) == (Status.REQUIRES_CAPTURE, True, "review")
    assert (intent.amount_captured, intent.points_earned) == (0, 0)
    assert intent.attempts.get().status == PaymentAttempt.Status.AUTHORIZED  # authorised, not captured
    assert intent.risk_review_deadline is not None
    assert intent.risk_review_deadline <= intent.authorization_expires_at
    return intent


def test_held_payment_cannot_be_captured_by_the_merchant(world: dict[str, Any], held: PaymentIntent) -> None:
    with pytest.raises(Conflict) as error:
        services.payment_capture(merchant=world["merchant"], payment_id=held.public_id, idempotency_key=key())
    assert error.value.code == "risk_review_pending"


def test_approve_captures_and_earns(world: dict[str, Any], held: PaymentIntent) -> None:
    approved = services.risk_review_approve(payment_id=held.public_id, actor=None)
    assert (approved.status, approved.risk_review, approved.risk_decision) == (Status.SUCCEEDED, False, "approved")
    assert approved.amount_captured == 20_000
    assert approved.points_earned == 200
    assert AuditLog.objects.filter(action="payment.risk_approved", object_id=str(held.pk)).count() == 1
    with pytest.raises(Conflict) as error:
        services.risk_review_reject(payment_id=held.public_id, actor=None)
    assert error.value.code == "risk_review_not_pending"


def test_reject_voids(world: dict[str, Any], held: PaymentIntent) -> None:
    rejected = services.risk_review_reject(payment_id=held.public_id, actor=None)
    assert (rejected.status, rejected.risk_decision, rejected.cancellation_reason) == (
        Status.CANCELED,
        "rejected",
        "risk_rejected",
    )
    assert rejected.attempts.get().status == PaymentAttempt.Status.VOIDED


def test_undecided_reviews_expire_by_the_job(world: dict[str, Any], held: PaymentIntent) -> None:
    assert services.risk_reviews_expire() == 0
    PaymentIntent.objects.filter(pk=held.pk).update(risk_review_deadline=timezone.now() - dt.timedelta(seconds=1))
    assert services.risk_reviews_expire() == 1
    held.refresh_from_db()
    assert (held.status, held.risk_decision, held.risk_review) == (Status.CANCELED, "expired", False)
    assert held.cancellation_reason == "risk_review_expired"
    assert services.risk_reviews_expire() == 0


def test_review_queue_in_the_admin_approves_through_the_service(world: dict[str, Any], held: PaymentIntent) -> None:
    from django.test import Client

    client = Client()
    user = AllianceOperatorFactory()
    assert client.login(username=user.username, password=PASSWORD)
    url = reverse("admin:payments_riskreview_changelist")
    response = client.get(url)
    assert response.status_code == 200
    assert [p.pk for p in response.context["cl"].queryset] == [held.pk]
    response = client.post(url, {"action": "approve", "_selected_action": [held.pk]})
    assert response.status_code == 302
    held.refresh_from_db()
    assert (held.status, held.risk_decision) == (Status.SUCCEEDED, "approved")
    assert AuditLog.objects.get(action="payment.risk_approved").actor == user
    assert list(client.get(url).context["cl"].queryset) == []


@pytest.mark.redis
def test_redis_counters_never_let_racing_increments_collide() -> None:
    from django.conf import settings

    counters = RedisCounters(settings.REDIS_URL)
    counters.prefix = f"test:risk:{next(_keys)}:{id(counters)}"
    seen: list[int] = []
    lock = threading.Lock()

    def bump() -> None:
        for _ in range(25):
            (value,) = counters.add([("k", 100, 60)])
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == [100 * n for n in range(1, 201)]  # every increment saw its own total
    assert 0 < counters.client.ttl(f"{counters.prefix}:k") <= 60
    counters.reset()
    assert counters.add([("k", 1, 60)]) == [1]
    counters.reset()


def test_approving_a_manual_capture_payment_hands_it_back_to_the_merchant(world: dict[str, Any]) -> None:
    make_risk_rule(name="big", kind="amount", threshold=10_000, action="review")
    held = pay(world, 20_000, capture_method="manual")
    assert held.risk_review is True
    approved = services.risk_review_approve(payment_id=held.public_id, actor=None)
    assert (approved.status, approved.risk_review, approved.risk_decision) == (
        Status.REQUIRES_CAPTURE,
        False,
        "approved",
    )
    captured = services.payment_capture(merchant=world["merchant"], payment_id=held.public_id, idempotency_key=key())
    assert (captured.status, captured.amount_captured) == (Status.SUCCEEDED, 20_000)


def test_a_merchant_cancel_of_a_held_payment_clears_the_queue(world: dict[str, Any], held: PaymentIntent) -> None:
    canceled = services.payment_cancel(merchant=world["merchant"], payment_id=held.public_id, idempotency_key=key())
    assert (canceled.status, canceled.risk_review) == (Status.CANCELED, False)
    with pytest.raises(Conflict):
        services.risk_review_approve(payment_id=held.public_id, actor=None)


# --- a second approval at or above the threshold ---------------------------------------------------------------


@pytest.fixture
def threshold(settings: Any) -> int:
    settings.RISK_REVIEW_SECOND_APPROVAL_MINOR = 20_000  # the held payment's amount: at the threshold, two needed
    return 20_000


def _release_requests(held: PaymentIntent) -> Any:
    return ApprovalRequest.objects.filter(kind="payments.risk_review_release", payload__payment_id=held.public_id)


def test_two_different_operators_release_a_payment_at_the_threshold(
    held: PaymentIntent, threshold: int, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = AllianceOperatorFactory(), AllianceOperatorFactory()
    after_first = services.risk_review_approve(payment_id=held.public_id, actor=first)
    assert (after_first.status, after_first.risk_review, after_first.risk_decision) == (
        Status.REQUIRES_CAPTURE,
        True,
        "",
    )
    assert after_first.amount_captured == 0
    assert after_first.attempts.get().status == PaymentAttempt.Status.AUTHORIZED
    request = _release_requests(held).get()  # the first approval is a request in the approval queue
    assert (request.status, request.maker, request.bank_id) == ("pending", first, held.issuer_id)
    assert request.payload == {
        "payment_id": held.public_id,
        "merchant_id": held.merchant_id,
        "amount": 20_000,
        "currency": "CNY",
    }
    assert request.expires_at <= held.risk_review_deadline  # it expires with the review at the latest
    assert request in approvals_waiting_for(second)
    assert request not in approvals_waiting_for(first)
    with translation.override("en"):
        assert dict(approval_describe(request))["amount"] == "200.00 CNY"

    with pytest.raises(PermissionDenied) as refused:
        services.risk_review_approve(payment_id=held.public_id, actor=first)
    assert refused.value.code == "second_approval_same_operator"
    assert PaymentIntent.objects.get(pk=held.pk).risk_review is True
    assert _release_requests(held).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        services.risk_review_approve(payment_id=held.public_id, actor=second)
    released = PaymentIntent.objects.get(pk=held.pk)
    assert (released.status, released.risk_review, released.risk_decision) == (Status.SUCCEEDED, False, "approved")
    assert released.amount_captured == 20_000
    request.refresh_from_db()
    assert (request.status, request.checker, request.result_id) == ("approved", second, str(held.pk))
    approved = AuditLog.objects.get(action="payment.risk_approved", object_id=str(held.pk))
    assert (approved.actor, approved.after) == (second, {"requested_by": first.pk})
    with pytest.raises(Conflict):
        services.risk_review_approve(payment_id=held.public_id, actor=AllianceOperatorFactory())


def test_the_approval_queue_releases_it_and_a_rejection_leaves_it_held(
    held: PaymentIntent, threshold: int, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = AllianceOperatorFactory(), AllianceOperatorFactory()
    services.risk_review_approve(payment_id=held.public_id, actor=first)
    request = _release_requests(held).get()
    approval_reject(request_id=request.pk, checker=second, reason="looks like fraud to me")
    still = PaymentIntent.objects.get(pk=held.pk)
    assert (still.status, still.risk_review, still.risk_decision) == (Status.REQUIRES_CAPTURE, True, "")
    # the next approval asks again; the queue's approval releases it
    services.risk_review_approve(payment_id=held.public_id, actor=second)
    again = _release_requests(held).get(status="pending")
    with django_capture_on_commit_callbacks(execute=True):
        approval_approve(request_id=again.pk, checker=first)
    released = PaymentIntent.objects.get(pk=held.pk)
    assert (released.status, released.risk_decision, released.amount_captured) == (Status.SUCCEEDED, "approved", 20_000)


def test_a_release_request_cannot_outlive_the_review(held: PaymentIntent, threshold: int) -> None:
    first, second = AllianceOperatorFactory(), AllianceOperatorFactory()
    services.risk_review_approve(payment_id=held.public_id, actor=first)
    request = _release_requests(held).get()
    PaymentIntent.objects.filter(pk=held.pk).update(risk_review_deadline=timezone.now() - dt.timedelta(seconds=1))
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() + dt.timedelta(hours=1))
    with pytest.raises(Conflict) as refused:  # run out, though the request itself has not expired yet
        approval_approve(request_id=request.pk, checker=second)
    assert refused.value.code == "risk_review_expired"
    request.refresh_from_db()
    assert request.status == "pending"  # the failed approval rolled back with it
    assert PaymentIntent.objects.get(pk=held.pk).risk_review is True
    assert services.risk_reviews_expire() == 1  # the expiry voids the payment and withdraws the request
    request.refresh_from_db()
    assert request.status == "cancelled"
    assert PaymentIntent.objects.get(pk=held.pk).risk_decision == "expired"


def test_below_the_threshold_one_approval_captures(held: PaymentIntent, settings: Any) -> None:
    settings.RISK_REVIEW_SECOND_APPROVAL_MINOR = 20_001
    released = services.risk_review_approve(payment_id=held.public_id, actor=StaffFactory())
    assert (released.status, released.amount_captured) == (Status.SUCCEEDED, 20_000)
    assert not ApprovalRequest.objects.exists()


def test_a_rejection_after_the_first_approval_voids(held: PaymentIntent, threshold: int) -> None:
    first = AllianceOperatorFactory()
    services.risk_review_approve(payment_id=held.public_id, actor=first)
    rejected = services.risk_review_reject(payment_id=held.public_id, actor=first)
    assert (rejected.status, rejected.risk_decision) == (Status.CANCELED, "rejected")
    assert rejected.attempts.get().status == PaymentAttempt.Status.VOIDED
    assert _release_requests(held).get().status == "cancelled"  # nothing left to release
    with pytest.raises(Conflict):
        services.risk_review_approve(payment_id=held.public_id, actor=AllianceOperatorFactory())


def test_an_approval_without_an_operator_is_refused_above_the_threshold(held: PaymentIntent, threshold: int) -> None:
    with pytest.raises(PermissionDenied) as refused:
        services.risk_review_approve(payment_id=held.public_id, actor=None)
    assert refused.value.code == "second_approval_required"
    assert not ApprovalRequest.objects.exists()
    assert PaymentIntent.objects.get(pk=held.pk).risk_review is True


def test_a_role_without_the_permission_cannot_give_the_first_approval(held: PaymentIntent, threshold: int) -> None:
    with pytest.raises(PermissionDenied) as refused:
        services.risk_review_approve(payment_id=held.public_id, actor=StaffFactory())
    assert refused.value.code == "release_not_allowed"
    assert not ApprovalRequest.objects.exists()


def test_other_currencies_always_need_two(settings: Any) -> None:
    settings.RISK_REVIEW_SECOND_APPROVAL_MINOR = 500_000
    assert services.risk_review_needs_two(PaymentIntent(currency="CNY", amount=499_999)) is False
    assert services.risk_review_needs_two(PaymentIntent(currency="CNY", amount=500_000)) is True
    assert services.risk_review_needs_two(PaymentIntent(currency="JPY", amount=1)) is True
    assert services.risk_review_needs_two(PaymentIntent(currency="HKD", amount=1)) is True


def _login(user: Any) -> Any:
    from django.test import Client

    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_admin_queue_shows_the_first_approval_and_needs_a_second_operator(
    held: PaymentIntent, threshold: int, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = AllianceOperatorFactory(), AllianceOperatorFactory()
    url = reverse("admin:payments_riskreview_changelist")
    first_client = _login(first)
    assert shown("needs two") in first_client.get(url).content.decode()
    # The first approval is a request: the operator is asked why, and nothing happens without a reason.
    asked = first_client.post(url, {"action": "approve", "_selected_action": [held.pk]})
    assert asked.status_code == 200
    assert 'name="reason"' in asked.content.decode()
    refused = first_client.post(url, {"action": "approve", "_selected_action": [held.pk], "post": "yes", "reason": " "})
    assert 'class="errorlist"' in refused.content.decode()
    assert not services.risk_release_requests_pending(held.public_id).exists()
    response = first_client.post(
        url,
        {"action": "approve", "_selected_action": [held.pk], "post": "yes", "reason": "Known customer, called back"},
        follow=True,
    )
    assert services.risk_release_requests_pending(held.public_id).get().reason == "Known customer, called back"
    recorded = shown(
        "%(payment)s: first approval recorded; a second, different operator must approve it.", payment=held.public_id
    )
    assert capfirst(recorded) in response.content.decode()  # the admin capitalises its messages
    second_client = _login(second)
    assert first.username in second_client.get(url).content.decode()  # the queue shows who gave the first approval
    held.refresh_from_db()
    assert (held.status, held.risk_review) == (Status.REQUIRES_CAPTURE, True)
    response = first_client.post(url, {"action": "approve", "_selected_action": [held.pk]}, follow=True)
    assert shown("You gave the first approval: a different operator must give the second.") in response.content.decode()
    held.refresh_from_db()
    assert held.risk_review is True
    with django_capture_on_commit_callbacks(execute=True):
        second_client.post(url, {"action": "approve", "_selected_action": [held.pk]})
    held.refresh_from_db()
    assert (held.status, held.risk_decision) == (Status.SUCCEEDED, "approved")
