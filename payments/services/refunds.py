"""Refunds (退货): never above what was captured, sent once under their own reference, and settled — points
reversed, fee returned, points paid with given back, all cumulatively — in one transaction with their event."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.calendar import business_date
from core.errors import Conflict, ValidationFailed
from core.idempotency import record_progress, resumed, run_idempotent
from core.money import validate_minor_amount
from merchants.models import Merchant

from .. import events, fees, ledger_bridge, promotions
from .. import points as payment_points
from ..connectors import get_connector
from ..connectors.base import ChannelResponse, Inquiry, Outcome, RefundRequest, RemoteState
from ..models import Channel, PaymentAttempt, PaymentIntent, Refund
from .attempts import logger
from .common import AttemptStatus, Status, idempotency_scope, payment_load, payment_save, refund_window_check


def refund_create(
    *,
    merchant: Merchant,
    payment_id: str,
    idempotency_key: str,
    amount: int | None = None,
    reason: str = "",
    livemode: bool = True,
) -> Refund:
    """A refund of a payment in this mode; the refund belongs to its payment's mode."""

    def execute() -> dict[str, Any]:
        earlier = resumed()
        if earlier and earlier.get("refund"):
            # An earlier run of this key wrote the refund (and may have sent it), then stopped: answer with that
            # refund as it is (one left pending or unknown is settled by `attempts_resolve`), never a second one.
            return {"refund": earlier["refund"]}
        return {"refund": _refund(payment_load(payment_id, merchant, livemode), amount, reason).public_id}

    outcome = run_idempotent(
        scope=idempotency_scope(merchant, livemode),
        key=idempotency_key,
        operation="refund.create",
        request={"payment": payment_id, "amount": amount, "reason": reason},
        execute=execute,
    )
    return Refund.objects.select_related("intent__merchant").get(public_id=outcome["refund"])


def _refund_open(intent: PaymentIntent, amount: int, reason: str) -> Refund:
    """A new `pending` refund of `intent` (in the caller's transaction, its amount already reserved): the payment's
    next reference, and its merchant, by which settlement finds a chunk's refunds; its month is the payment's."""
    count = Refund.objects.of(intent).count() + 1
    return Refund.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,  # the month its partition is cut on: the payment's, always
        merchant_id=intent.merchant_id,
        amount=amount,
        reason=reason[:100],
        reference=f"{intent.public_id}-r{count}",
    )


def _reserve(intent: PaymentIntent, amount: int) -> bool:
    """Reserves `amount` of the payment's refundable amount by one guarded update of its row (in its month): False
    when the payment is no longer succeeded or has less than that left (captured less refunds and disputes)."""
    return bool(
        PaymentIntent.objects.one(intent)
        .filter(
            status=Status.SUCCEEDED,
            amount_refund_reserved__lte=F("amount_captured") - F("amount_disputed") - amount,
        )
        .update(amount_refund_reserved=F("amount_refund_reserved") + amount, updated_at=timezone.now())
    )


def _refund(intent: PaymentIntent, amount: int | None, reason: str) -> Refund:
    if intent.status != Status.SUCCEEDED:
        raise Conflict(f"A payment in status {intent.status} cannot be refunded.", code="payment_unexpected_state")
    remaining = intent.amount_captured - intent.amount_refund_reserved - intent.amount_disputed
    amount = remaining if amount is None else amount
    if amount == 0 and remaining == 0:
        raise Conflict("This payment has been refunded in full.", code="charge_already_refunded")
    refund_window_check(intent)
    validate_minor_amount(amount, intent.currency)
    with transaction.atomic():
        if not _reserve(intent, amount):
            raise ValidationFailed(
                "The refund would exceed what was captured.", code="refund_exceeds_captured", param="amount"
            )
        refund = _refund_open(intent, amount, reason)
        record_progress({"refund": refund.public_id})  # a retry of the key carries on with it
    attempt = PaymentAttempt.objects.of(intent).filter(status=AttemptStatus.CAPTURED).select_related("channel").get()
    request = RefundRequest(
        channel=attempt.channel.remote_id or attempt.channel.code,
        reference=attempt.reference,
        refund_reference=refund.reference,
        amount=amount,
        currency=intent.currency,
    )
    refund_send(refund, attempt.channel, request)
    refund.refresh_from_db(from_queryset=Refund.objects.one(refund))
    return refund


def refund_send(refund: Refund, channel: Channel, request: RefundRequest) -> None:
    """Sends the refund (again, under the same reference, which the channel answers once) and records the answer."""
    connector = get_connector(channel.connector)
    try:
        response = connector.refund(request)
    except Exception:
        logger.exception("refund raised for %s", refund.reference)
        response = ChannelResponse(Outcome.UNKNOWN)
    if response.outcome == Outcome.UNKNOWN:
        try:
            inquiry = connector.refund_inquire(request)
        except Exception:
            inquiry = Inquiry(Outcome.UNKNOWN)
        if inquiry.outcome == Outcome.APPROVED:
            response = (
                ChannelResponse(Outcome.APPROVED, RemoteState.REFUNDED)
                if inquiry.state == RemoteState.REFUNDED
                else ChannelResponse(Outcome.FAILED, code="refund_not_processed")
            )
    if response.outcome == Outcome.APPROVED:
        _finish_refund(refund, response.channel_reference)
    elif response.outcome == Outcome.UNKNOWN:
        _refund_unknown(refund)
    else:
        _fail_refund(refund, response.code or "refund_declined")


def _finish_refund(refund: Refund, channel_reference: str) -> None:
    with transaction.atomic():
        locked_refund = Refund.objects.one(refund).select_for_update().get()
        if locked_refund.status == Refund.Status.SUCCEEDED:
            return
        intent = (
            PaymentIntent.objects.select_for_update(of=("self",))
            .select_related("merchant", "channel")
            .get(pk=refund.intent_id, created_at=refund.intent_created_at)
        )
        intent.amount_refunded += refund.amount
        fees.record_refund(intent, locked_refund)
        returned = reversal_apply(intent, cause=locked_refund.public_id)
        payment_save(intent, "amount_refunded", "points_reversed", "fee_returned", "updated_at")
        locked_refund.status = Refund.Status.SUCCEEDED
        locked_refund.channel_reference = channel_reference
        locked_refund.points_reversed = returned.points
        locked_refund.completed_at = timezone.now()
        # Settled with the business date it succeeded on, by its payment's channel's cut-off, as a capture is.
        locked_refund.business_date = _business_date(intent, locked_refund.completed_at)
        locked_refund.promotion_cost_returned = returned.merchant_cost
        locked_refund.cofunding_returned = returned.cofunding
        Refund.objects.one(locked_refund).update(
            status=locked_refund.status,
            channel_reference=locked_refund.channel_reference,
            points_reversed=locked_refund.points_reversed,
            completed_at=locked_refund.completed_at,
            business_date=locked_refund.business_date,
            promotion_cost_returned=locked_refund.promotion_cost_returned,
            cofunding_returned=locked_refund.cofunding_returned,
        )
        locked_refund.intent = intent
        events.refund_status_changed(locked_refund)


@dataclass(frozen=True)
class Returned:
    """What one reversal handed back: points reversed now, and the promotions' merchant cost and co-funding."""

    points: int = 0
    merchant_cost: int = 0
    cofunding: int = 0


def reversed_total(intent: PaymentIntent) -> int:
    """What the payment has given back so far, refunds and lost disputes alike: the base of every cumulative rule."""
    return intent.amount_refunded + intent.amount_charged_back


def reversal_apply(intent: PaymentIntent, *, cause: str) -> Returned:
    """Brings the payment's points earned, points paid with and promotions in line with what it has given back
    (`reversed_total`, already counting this `cause`), cumulatively: reversed so far = floor(earned × reversed /
    captured), spent points becoming a points debt. The one rule for refunds and lost disputes alike. In the caller's
    transaction, payment locked; sets `points_reversed` on the intent (the caller saves it)."""
    total = reversed_total(intent)
    target = payment_points.points_to_have_reversed(intent, total)
    delta = target - intent.points_reversed
    intent.points_reversed = target
    ledger_bridge.spend_return(intent=intent, refunded_total=total, captured_total=intent.amount_captured, cause=cause)
    if delta > 0:
        payment_points.post_reversal(intent, delta, cause=cause)
    promotion = promotions.on_refund(intent, refunded_total=total, cause=cause)
    return Returned(points=delta, merchant_cost=promotion.merchant_cost, cofunding=promotion.cofunding)


def _business_date(intent: PaymentIntent, moment: dt.datetime) -> dt.date:
    cutoff = intent.channel.cutoff if intent.channel is not None else Channel._meta.get_field("cutoff").default
    return business_date(moment, cutoff)


def _refund_unknown(refund: Refund) -> None:
    with transaction.atomic():
        if Refund.objects.one(refund).filter(status=Refund.Status.PENDING).update(status=Refund.Status.UNKNOWN):
            refund.status = Refund.Status.UNKNOWN
            events.refund_status_changed(refund)  # refund.pending: the outcome is not known yet


def _fail_refund(refund: Refund, code: str) -> None:
    with transaction.atomic():
        failed = (
            Refund.objects.one(refund)
            .filter(status__in=[Refund.Status.PENDING, Refund.Status.UNKNOWN])
            .update(status=Refund.Status.FAILED, failure_code=code[:64], completed_at=timezone.now())
        )
        if failed:
            PaymentIntent.objects.filter(pk=refund.intent_id, created_at=refund.intent_created_at).update(
                amount_refund_reserved=F("amount_refund_reserved") - refund.amount
            )
            refund.refresh_from_db(from_queryset=Refund.objects.one(refund))
            events.refund_status_changed(refund)


CORRECTION_PREFIX = "recon:"  # a correction refund's channel reference: made by us, never sent, never on a statement


def refund_correction(intent: PaymentIntent, amount: int, *, reason: str) -> Refund:
    """A refund recorded without a channel call, because the channel's statement shows it captured `amount` less than
    we did (reconciliation took the channel's view): the payment's refundable amount reserved, then settled as any
    succeeded refund — points reversed, fee and promotions handed back in proportion, `refund.succeeded` — and
    settled in the refund's business date. In the caller's transaction when there is one."""
    validate_minor_amount(amount, intent.currency)
    refund_window_check(intent)  # its business date is held to the window as a merchant's refund's is
    with transaction.atomic():
        if not _reserve(intent, amount):
            raise Conflict("The correction would exceed what is left to refund.", code="refund_exceeds_captured")
        refund = _refund_open(intent, amount, reason)
        _finish_refund(refund, f"{CORRECTION_PREFIX}{refund.public_id}"[:64])
    refund.refresh_from_db(from_queryset=Refund.objects.one(refund))
    return refund
