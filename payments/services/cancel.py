"""Cancelling a payment: before confirmation, an authorisation voided, or a capture reversed before its settlement
cut-off (撤销: its business day for a T+1 merchant, its window for T+0) and while it is on no settlement line. After
that a payment is refunded instead (退货, `refunds`)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.errors import ChannelError, Conflict
from merchants.models import Merchant

from .. import events, fees, ledger_bridge, promotions
from .. import points as payment_points
from ..connectors import get_connector
from ..connectors.base import ChannelResponse, Outcome, ReferenceRequest, RemoteState
from ..models import PaymentAttempt, PaymentIntent, SettlementLine
from .attempts import attempt_claim, attempt_record, attempt_set, logger
from .common import CHARGED, AttemptStatus, Status, payment_keyed, payment_save
from .settlement import on_a_line, void_deadline


def payment_cancel(
    *,
    merchant: Merchant,
    payment_id: str,
    idempotency_key: str,
    reason: str = "requested_by_merchant",
    livemode: bool = True,
) -> PaymentIntent:
    return payment_keyed(
        merchant=merchant,
        payment_id=payment_id,
        idempotency_key=idempotency_key,
        livemode=livemode,
        operation="payment.cancel",
        request={"reason": reason},
        apply=lambda intent: cancel(intent, reason),
    )


def cancel(intent: PaymentIntent, reason: str) -> None:
    now = timezone.now()
    if intent.status == Status.REQUIRES_CONFIRMATION:
        with transaction.atomic():
            won = (
                PaymentIntent.objects.one(intent)
                .filter(status=Status.REQUIRES_CONFIRMATION)
                .update(status=Status.CANCELED, canceled_at=now, cancellation_reason=reason[:32], updated_at=now)
            )
            if not won:
                raise Conflict("The payment changed while canceling; retry.", code="payment_unexpected_state")
            intent.status, intent.canceled_at, intent.cancellation_reason = Status.CANCELED, now, reason[:32]
            ledger_bridge.spend_void(intent=intent)
            promotions.on_release(intent)
            events.payment_status_changed(intent)
        return
    if intent.status == Status.SUCCEEDED:
        if not voidable_today(intent):
            raise Conflict(
                "This payment has been settled or is past its business day; refund it instead.",
                code="payment_not_voidable",
            )
        source_status = Status.SUCCEEDED
    elif intent.status == Status.REQUIRES_CAPTURE:
        source_status = Status.REQUIRES_CAPTURE
    else:
        raise Conflict(f"A payment in status {intent.status} cannot be canceled.", code="payment_unexpected_state")
    guard = PaymentIntent.objects.one(intent).filter(status=source_status)
    if source_status == Status.SUCCEEDED:
        lines = SettlementLine.objects.filter(
            payment=OuterRef("pk"), payment_created_at=OuterRef("created_at"), kind=SettlementLine.Kind.PAYMENT
        )
        guard = guard.filter(~Exists(lines), amount_refund_reserved=0, amount_disputed=0)
    with transaction.atomic():
        if source_status == Status.SUCCEEDED:
            # The merchant's row first: a settlement chunk holding it (FOR SHARE) is waited for, so that the guarded
            # UPDATE, a new statement, sees the line the chunk committed; a chunk that comes later waits for this
            # transaction and then finds the payment no longer succeeded. Never both. (NO KEY UPDATE: payments being
            # made for the merchant meanwhile are not held up.)
            Merchant.objects.select_for_update(no_key=True).filter(pk=intent.merchant_id).values_list(
                "pk", flat=True
            ).first()
        if not guard.update(status=Status.PROCESSING, updated_at=now):
            raise Conflict("The payment changed while canceling; retry.", code="payment_unexpected_state")
        attempt = PaymentAttempt.objects.of(intent).filter(status__in=CHARGED).select_related("channel").get()
        if not attempt_claim(attempt):
            raise Conflict("This payment is being settled by another process.", code="payment_unexpected_state")
    channel = attempt.channel
    connector = get_connector(channel.connector)
    request = ReferenceRequest(channel.remote_id or channel.code, attempt.reference)
    # An authorisation is voided; a captured payment is undone by reversal (撤销 on its business day).
    try:
        response = connector.reverse(request) if source_status == Status.SUCCEEDED else connector.void(request)
    except Exception:
        logger.exception("void raised for %s", attempt.reference)
        response = ChannelResponse(Outcome.UNKNOWN)
    if response.outcome == Outcome.UNKNOWN:
        inquiry = connector.inquire(request)
        if inquiry.outcome == Outcome.APPROVED and inquiry.state in (RemoteState.VOIDED, RemoteState.REVERSED):
            response = ChannelResponse(Outcome.APPROVED, inquiry.state)
    if response.outcome != Outcome.APPROVED:
        with transaction.atomic():
            PaymentIntent.objects.one(intent).filter(status=Status.PROCESSING).update(status=source_status)
            attempt_record(attempt, was=CHARGED)  # unchanged, the claim released
        raise ChannelError(f"The channel refused the void ({response.code or 'unknown'}).", code="void_failed")
    cancel_finish(intent, attempt, reason)


def cancel_finish(intent: PaymentIntent, attempt: PaymentAttempt, reason: str) -> None:
    """Records a void or reversal the channel made of a `processing` payment's charged attempt: the payment
    cancelled, what it earned and spent in points given back, its fee handed back, the attempt voided or reversed."""
    now = timezone.now()
    with transaction.atomic():
        locked = PaymentIntent.objects.one(intent).select_for_update().get()
        if locked.status != Status.PROCESSING:
            return  # recorded by another process meanwhile
        captured = locked.captured_at is not None
        points_to_reverse = locked.points_earned - locked.points_reversed
        locked.status = Status.CANCELED
        locked.canceled_at = now
        locked.cancellation_reason = reason[:32]
        locked.amount_capturable = 0
        locked.points_reversed = locked.points_earned
        locked.risk_review = False
        locked.updated_at = now
        attempt_set(
            attempt, AttemptStatus.REVERSED if captured else AttemptStatus.VOIDED, attempt.channel_reference, "", ""
        )
        if not attempt_record(attempt, was=CHARGED):
            return  # another process settled the attempt: it records what became of the payment
        if captured:
            fees.record_reversal(locked)
            ledger_bridge.spend_return(
                intent=locked,
                refunded_total=locked.amount_captured,
                captured_total=locked.amount_captured,
                cause="void",
            )
        else:
            ledger_bridge.spend_void(intent=locked)
            promotions.on_release(locked)
        payment_save(
            locked, "status", "canceled_at", "cancellation_reason", "amount_capturable", "points_reversed",
            "risk_review", "fee_returned", "updated_at",
        )  # fmt: skip
        if points_to_reverse > 0:
            payment_points.post_reversal(locked, points_to_reverse, cause="void")
        if captured:  # last: the promotions' rows
            promotions.on_refund(locked, refunded_total=locked.amount_captured, cause="void")
        events.payment_status_changed(locked)


def voidable_today(intent: PaymentIntent) -> bool:
    """Before its settlement cut-off and on no settlement line (the cancel's guarded UPDATE checks the line again)."""
    deadline = void_deadline(intent)
    return deadline is not None and timezone.now() < deadline and not on_a_line(intent)
