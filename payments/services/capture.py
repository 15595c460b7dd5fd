"""Moving a `processing` payment on: authorised, captured (with its points, fee and split) or failed; and the
merchant's capture of an authorisation.

Every move is one transaction that takes its locks in one order — the payment (its guarded UPDATE), then its
attempt, then the ledger's accounts — and writes the event of the new state with it (the outbox). A capture
happens once: the move out of `processing` is a guarded UPDATE that only one request can win.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.calendar import business_date
from core.errors import ChannelError, Conflict, ValidationFailed
from core.money import validate_minor_amount
from merchants.models import Merchant

from .. import events, fees, ledger_bridge, promotions
from .. import points as payment_points
from ..connectors import get_connector
from ..connectors.base import CaptureRequest, ChannelResponse, Outcome, RemoteState
from ..models import PaymentAttempt, PaymentIntent
from ..windows import capture_window
from .attempts import attempt_claim, attempt_record, attempt_set, capture_inquiry, logger
from .common import (
    CHARGED,
    RISK_REVIEW_WINDOW,
    UNRESOLVED,
    AttemptStatus,
    Status,
    capture_window_check,
    payment_keyed,
)


def payment_finish(
    intent: PaymentIntent, attempt: PaymentAttempt, *, captured: bool, was: Iterable[str] = UNRESOLVED
) -> bool:
    """Records the channel's approval (`attempt`, its outcome set on the object, still unresolved in the database)
    and moves the payment on to `requires_capture`, or to `succeeded` when the channel captured at once (`was`: the
    attempt's recorded state, unresolved unless its approval was recorded before the move). False when
    another process moved the payment first (the attempt's outcome is written all the same) or recorded another
    outcome for the attempt (then nothing is written)."""
    channel = attempt.channel
    now = timezone.now()
    fields: dict[str, Any] = {
        "channel": channel,
        "acquirer_id": channel.acquirer_id,
        "authorized_at": now,
        "failure_code": "",
        "failure_message": "",
        "updated_at": now,
    }
    if captured:
        fields.update(
            amount_captured=intent.amount,
            amount_capturable=0,
            status=Status.SUCCEEDED,
            captured_at=now,
            business_date=business_date(now, channel.cutoff),
        )
    else:
        fields.update(
            amount_capturable=intent.amount,
            status=Status.REQUIRES_CAPTURE,
            # Never past the capture window: the payment's business date is held to it.
            authorization_expires_at=min(
                now + timedelta(hours=channel.authorization_hours), intent.created_at + capture_window()
            ),
        )
        if intent.risk_review:
            fields["risk_review_deadline"] = min(now + RISK_REVIEW_WINDOW, fields["authorization_expires_at"])
    return _move_on(intent, attempt, fields, capture=captured, was=was)


class _Overtaken(Exception):
    """Another process recorded another outcome for the attempt: what this one was about to write is void."""


def _move_on(
    intent: PaymentIntent, attempt: PaymentAttempt, fields: dict[str, Any], *, capture: bool, was: Iterable[str]
) -> bool:
    """The one way a `processing` payment moves on after its channel approved: the guarded move with `fields`, the
    attempt's outcome (over the state `was` it was read in) and, for a capture, the points earned and spent, the fee
    and its split; then the event."""
    won = 0
    try:
        with transaction.atomic():
            if capture:
                for name, value in fields.items():
                    setattr(intent, name, value)
                fields["points_earned"] = _points_to_earn(intent)
            won = PaymentIntent.objects.one(intent).filter(status=Status.PROCESSING).update(**fields)
            if not attempt_record(attempt, was=was):
                raise _Overtaken
            if won:
                for name, value in fields.items():
                    setattr(intent, name, value)
                if capture:
                    _on_capture(intent, at=fields["captured_at"])
                events.payment_status_changed(intent)
    except _Overtaken:
        won = 0
    if not won:
        intent.refresh_from_db(from_queryset=PaymentIntent.objects.one(intent))
    return bool(won)


def _on_capture(intent: PaymentIntent, *, at: Any) -> None:
    """In the capture's transaction (the payment row is locked by its UPDATE): points earned on the cash part,
    points used to pay spent from their hold, the fee charged and split."""
    if intent.points_earned:
        payment_points.post_earn(intent, intent.points_earned)
    extra: dict[str, Any] = {}
    spend = ledger_bridge.spend_post(intent=intent)
    if spend is not None:  # with its time: the reference to the partitioned transactions carries it
        extra["points_spend_id"] = spend.pk
        extra["points_spend_created_at"] = spend.created_at
    if fees.record_capture(intent, at=at):
        extra["fee"] = intent.fee
    extra.update(promotions.on_capture(intent))  # last: the promotions' rows
    if extra:
        PaymentIntent.objects.one(intent).update(**extra)
        for name, value in extra.items():
            setattr(intent, name, value)


def _points_to_earn(intent: PaymentIntent) -> int:
    """The points a capture earns: zero when the issuer runs no points programme, and for a test-mode payment
    (points are a bank's real liability; a test never creates one)."""
    if not intent.livemode or payment_points.issuer_program(intent) is None:
        return 0
    return payment_points.points_for_capture(intent)


def payment_fail(
    intent: PaymentIntent,
    code: str,
    message: str,
    *,
    attempt: PaymentAttempt | None = None,
    also: dict[str, Any] | None = None,
) -> None:
    """Fails a payment not yet charged (`processing` or awaiting confirmation), with the attempt's outcome that
    failed it and `also` (its risk outcome, say); the points it held go back to the cardholder. Nothing is written
    when another process recorded another outcome for the attempt meanwhile."""
    try:
        _fail(intent, code, message, attempt=attempt, also=also)
    except _Overtaken:
        intent.refresh_from_db(from_queryset=PaymentIntent.objects.one(intent))


def _fail(
    intent: PaymentIntent, code: str, message: str, *, attempt: PaymentAttempt | None, also: dict[str, Any] | None
) -> None:
    with transaction.atomic():
        failed = (
            PaymentIntent.objects.one(intent)
            .filter(status__in=[Status.PROCESSING, Status.REQUIRES_CONFIRMATION])
            .update(
                status=Status.FAILED,
                failure_code=code[:64],
                failure_message=message[:255],
                updated_at=timezone.now(),
                **(also or {}),
            )
        )
        if attempt is not None and not attempt_record(attempt, was=UNRESOLVED):
            raise _Overtaken  # another process settled the attempt: it decides what became of the payment
        intent.refresh_from_db(from_queryset=PaymentIntent.objects.one(intent))
        if failed:
            ledger_bridge.spend_void(intent=intent)
            promotions.on_release(intent)
            events.payment_status_changed(intent)


# --- the merchant's capture of an authorisation ------------------------------------------------------------------


def payment_capture(
    *, merchant: Merchant, payment_id: str, idempotency_key: str, amount: int | None = None, livemode: bool = True
) -> PaymentIntent:
    return payment_keyed(
        merchant=merchant,
        payment_id=payment_id,
        idempotency_key=idempotency_key,
        livemode=livemode,
        operation="payment.capture",
        request={"amount": amount},
        apply=lambda intent: capture(intent, amount),
    )


def capture(intent: PaymentIntent, amount: int | None) -> None:
    """Captures `amount` (all of it by default) of an authorised payment: a partial capture releases the rest."""
    if intent.status != Status.REQUIRES_CAPTURE:
        raise Conflict(f"A payment in status {intent.status} cannot be captured.", code="payment_unexpected_state")
    if intent.risk_review:
        raise Conflict("This payment is held for risk review; it cannot be captured yet.", code="risk_review_pending")
    amount = intent.amount_capturable if amount is None else amount
    validate_minor_amount(amount, intent.currency)
    if amount > intent.amount_capturable:
        raise ValidationFailed(
            f"At most {intent.amount_capturable} can be captured.", code="amount_too_large", param="amount"
        )
    if intent.authorization_expires_at and intent.authorization_expires_at <= timezone.now():
        raise Conflict("The authorisation has expired; it can no longer be captured.", code="authorization_expired")
    capture_window_check(intent)
    with transaction.atomic():
        won = (
            PaymentIntent.objects.one(intent)
            .filter(status=Status.REQUIRES_CAPTURE)
            .update(status=Status.PROCESSING, updated_at=timezone.now())
        )
        if not won:
            raise Conflict("This payment is being captured by another request.", code="payment_unexpected_state")
        attempt = (
            PaymentAttempt.objects.of(intent).filter(status=AttemptStatus.AUTHORIZED).select_related("channel").get()
        )
        if not attempt_claim(attempt):
            raise Conflict("This payment is being settled by another process.", code="payment_unexpected_state")
    intent.status = Status.PROCESSING
    channel = attempt.channel
    request = CaptureRequest(
        channel=channel.remote_id or channel.code, reference=attempt.reference, amount=amount, currency=intent.currency
    )
    try:
        response = get_connector(channel.connector).capture(request)
    except Exception:
        logger.exception("capture raised for %s", attempt.reference)
        response = ChannelResponse(Outcome.UNKNOWN)
    if response.outcome == Outcome.UNKNOWN:
        inquiry = capture_inquiry(attempt)
        if inquiry.outcome == Outcome.APPROVED:
            captured = inquiry.state == RemoteState.CAPTURED
            response = ChannelResponse(Outcome.APPROVED if captured else Outcome.DECLINED, inquiry.state)
    if response.outcome == Outcome.APPROVED:
        capture_finish(intent, attempt, amount)
        return
    if response.outcome == Outcome.UNKNOWN:
        with transaction.atomic():  # stays processing, the claim released: attempts_resolve finishes it
            attempt_record(attempt, was=CHARGED)
            events.payment_status_changed(intent)
        return
    capture_not_made(intent, attempt, tell=False)
    raise ChannelError(f"The channel refused the capture ({response.code or 'declined'}).", code="capture_failed")


def capture_finish(intent: PaymentIntent, attempt: PaymentAttempt, amount: int) -> bool:
    """Records a capture the channel made of `amount` (the merchant's, or one the resolver found)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "amount_captured": amount,
        "amount_capturable": 0,
        "status": Status.SUCCEEDED,
        "captured_at": now,
        "business_date": business_date(now, attempt.channel.cutoff),
        "updated_at": now,
    }
    attempt_set(attempt, AttemptStatus.CAPTURED, attempt.channel_reference, "", "")
    return _move_on(intent, attempt, fields, capture=True, was=CHARGED)


def capture_not_made(intent: PaymentIntent, attempt: PaymentAttempt, *, tell: bool = True) -> None:
    """A capture the channel did not make: the payment is authorised again (`requires_capture`) and the caller's
    claim on the attempt released. With `tell`, its event tells a merchant who was sent `payment.processing` while
    the answer was unknown how it ended (a refusal the merchant's own request was answered with needs none)."""
    _back_to(intent, attempt, Status.REQUIRES_CAPTURE, tell=tell)


def restore_captured(intent: PaymentIntent, attempt: PaymentAttempt) -> None:
    """A captured payment whose cancellation stopped before the channel reversed it: succeeded again, as the
    merchant last heard."""
    _back_to(intent, attempt, Status.SUCCEEDED, tell=False)


def _back_to(intent: PaymentIntent, attempt: PaymentAttempt, status: str, *, tell: bool) -> None:
    with transaction.atomic():
        back = (
            PaymentIntent.objects.one(intent)
            .filter(status=Status.PROCESSING)
            .update(status=status, updated_at=timezone.now())
        )
        attempt_record(attempt, was=CHARGED)
        if back:
            intent.status = status
            if tell:
                events.payment_status_changed(intent)
