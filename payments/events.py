"""Events about payments, refunds and agreements for the merchant's webhooks: the payments services write them (the
outbox, `merchants.services.events_emit`) in the transaction of the state change they describe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from merchants.services import event_emit, events_emit

from .models import Agreement, AgreementRequest, Dispute, PaymentIntent, Refund, SettlementBatch


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


# --- what a merchant sees of a payment and a refund (the API's bodies and the events' objects) ----------------------


def payment_out(intent: PaymentIntent) -> dict[str, Any]:
    card = intent.card
    return {
        "id": intent.public_id,
        "object": "payment",
        "amount": intent.amount,
        "discount": intent.discount_amount,
        "promotions": intent.promotions,
        "promotion_points": intent.promotion_points,
        "store": intent.store.code if intent.store is not None else None,
        "currency": intent.currency,
        "status": intent.status,
        "capture_method": intent.capture_method,
        "amount_capturable": intent.amount_capturable,
        "amount_captured": intent.amount_captured,
        "amount_refunded": intent.amount_refunded,
        "payment_method": {
            "type": intent.method,
            "card": {"bank": card.bank.code, "last4": card.last4} if card else None,
        },
        "description": intent.description,
        "merchant_reference": intent.merchant_reference,
        "metadata": intent.metadata,
        "failure_code": intent.failure_code or None,
        "failure_message": intent.failure_message or None,
        "points_earned": intent.points_earned,
        "points_reversed": intent.points_reversed,
        "livemode": intent.livemode,
        "created": unix(intent.created_at),
        "captured": unix(intent.captured_at),
        "canceled": unix(intent.canceled_at),
        "review": review_out(intent),
    }


def review_out(intent: PaymentIntent) -> dict[str, Any] | None:
    """Why a payment is held, and how its risk review ended: null for a payment never held. `open` while held (an
    automatic-capture payment then waits in requires_capture), `approved`, `rejected` or `expired` once decided."""
    if not (intent.risk_review or intent.risk_decision):
        return None
    return {
        "status": "open" if intent.risk_review else intent.risk_decision,
        "reasons": [reason.get("code", "") for reason in intent.risk_reasons],
        "deadline": unix(intent.risk_review_deadline),
    }


def refund_out(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.public_id,
        "object": "refund",
        "payment": refund.intent.public_id,
        "amount": refund.amount,
        "currency": refund.intent.currency,
        "status": refund.status,
        "reason": refund.reason,
        "failure_code": refund.failure_code or None,
        "points_reversed": refund.points_reversed,
        "livemode": refund.intent.livemode,
        "created": unix(refund.created_at),
    }


PAYMENT_STATUS_EVENTS = {
    PaymentIntent.Status.REQUIRES_CAPTURE: "payment.requires_capture",
    PaymentIntent.Status.SUCCEEDED: "payment.succeeded",
    PaymentIntent.Status.FAILED: "payment.failed",
    PaymentIntent.Status.PROCESSING: "payment.processing",
    PaymentIntent.Status.CANCELED: "payment.canceled",
}
REFUND_STATUS_EVENTS = {
    Refund.Status.SUCCEEDED: "refund.succeeded",
    Refund.Status.FAILED: "refund.failed",
    Refund.Status.PENDING: "refund.pending",
    Refund.Status.UNKNOWN: "refund.pending",
}


def payment_created(intent: PaymentIntent) -> None:
    events_emit(merchant=intent.merchant, events=[("payment.created", payment_out(intent))], livemode=intent.livemode)


def payment_status_changed(intent: PaymentIntent) -> None:
    """The event of the payment's new status (as the object now holds it), if its status has one."""
    event_type = PAYMENT_STATUS_EVENTS.get(PaymentIntent.Status(intent.status))
    if event_type is not None:
        event_emit(merchant=intent.merchant, type=event_type, payload=payment_out(intent), livemode=intent.livemode)


def payment_review_closed(intent: PaymentIntent) -> None:
    """`payment.review_closed`: a risk review was decided (approved, rejected) or ran out (expired)."""
    events_emit(
        merchant=intent.merchant, events=[("payment.review_closed", payment_out(intent))], livemode=intent.livemode
    )


def refund_status_changed(refund: Refund) -> None:
    """The event of the refund's new status (as the object now holds it)."""
    intent = refund.intent
    event_emit(
        merchant=intent.merchant,
        type=REFUND_STATUS_EVENTS[Refund.Status(refund.status)],
        payload=refund_out(refund),
        livemode=intent.livemode,
    )


# --- agreements -------------------------------------------------------------------------------------------------------


def agreement_out(agreement: Agreement, *, token: str | None = None) -> dict[str, Any]:
    """An agreement as its merchant sees it: the token only when the caller hands it (its one collection)."""
    card, account = agreement.card, agreement.linked_account
    if card is not None:
        funding = {"type": "card", "bank": card.bank.code, "last4": card.last4}
    else:
        assert account is not None  # one funding source (a check constraint)
        funding = {"type": "balance", "bank": account.bank.code, "last4": account.masked_number[-4:]}
    return {
        "id": agreement.public_id,
        "object": "agreement",
        "status": "revoked" if agreement.revoked_at else "active",
        "currency": agreement.currency,
        "limits": {"per_payment": agreement.limit_per_payment, "per_month": agreement.limit_per_month},
        "funding": funding,
        "token": token,
        "token_hint": agreement.token_hint,
        "created": unix(agreement.created_at),
        "revoked": unix(agreement.revoked_at),
    }


def agreement_request_out(request: AgreementRequest, *, url: str) -> dict[str, Any]:
    """An agreement request as its merchant sees it; `url` is the hosted page the cardholder is sent to."""
    return {
        "id": request.public_id,
        "object": "agreement_request",
        "status": request.current_status,
        "currency": request.currency,
        "limits": {"per_payment": request.limit_per_payment, "per_month": request.limit_per_month},
        "purpose": request.purpose,
        "return_url": request.return_url,
        "url": url,
        "expires": unix(request.expires_at),
        "agreement": request.agreement.public_id if request.agreement else None,
        "livemode": request.livemode,
        "created": unix(request.created_at),
    }


def agreement_granted(agreement: Agreement, *, livemode: bool) -> None:
    """`agreement.granted`, without the token (the merchant collects it once from the API)."""
    event_emit(
        merchant=agreement.merchant, type="agreement.granted", payload=agreement_out(agreement), livemode=livemode
    )


def agreement_revoked(agreement: Agreement, *, livemode: bool) -> None:
    event_emit(
        merchant=agreement.merchant, type="agreement.revoked", payload=agreement_out(agreement), livemode=livemode
    )


# --- settlements -------------------------------------------------------------------------------------------------


def settlement_out(batch: SettlementBatch) -> dict[str, Any]:
    """What a merchant sees of a settlement batch (the API's body and the events' object); its lines are read apart."""
    return {
        "id": batch.public_id,
        "object": "settlement",
        "currency": batch.currency,
        "cycle": batch.cycle,
        "period": batch.period,
        "cutoff": unix(batch.cutoff_at),
        "settle_on": batch.settle_on.isoformat(),
        "status": batch.status,
        "hold_reason": batch.hold_reason or None,
        "payments": batch.payments_count,
        "gross": batch.gross,
        "refunds_count": batch.refunds_count,
        "refunds": batch.refunds,
        "fees": batch.fee_total,
        "promotion_charges": batch.promotion_charges,
        "cofunding_credits": batch.cofunding_credits,
        "dispute_debits": batch.dispute_debits,
        "reserve_held": batch.reserve_held,
        "reserve_release_on": batch.reserve_release_on.isoformat() if batch.reserve_release_on else None,
        "reserve_released": batch.reserve_released,
        "carried_in": batch.carried_in,
        "carried_out": batch.carried_out,
        "net": batch.net,
        "livemode": batch.livemode,
        "created": unix(batch.created_at),
        "settled": unix(batch.settled_at),
    }


def settlement_status_changed(batch: SettlementBatch) -> None:
    """`settlement.paid` or `settlement.returned` (the payout's outcome), with the batch as it stands."""
    event_emit(
        merchant=batch.merchant,
        type=f"settlement.{batch.status}",
        payload=settlement_out(batch),
        livemode=batch.livemode,
    )


# --- disputes ---------------------------------------------------------------------------------------------------------


def dispute_out(dispute: Dispute) -> dict[str, Any]:
    """What a merchant sees of a dispute (the API's body and the events' object); evidence is listed, never served."""
    evidence = list(dispute.evidence.all()) if dispute.pk else []
    return {
        "id": dispute.public_id,
        "object": "dispute",
        "payment": dispute.payment.public_id,
        "kind": dispute.kind,
        "reason_code": dispute.reason_code or None,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "status": dispute.status,
        "opened_by": dispute.opened_by,
        "respond_by": dispute.respond_by.isoformat(),
        "answered": unix(dispute.answered_at),
        "evidence": {
            "text": next((row.text for row in evidence if row.text), None),
            "files": [
                {"name": row.filename, "content_type": row.content_type, "size": row.size, "sha256": row.sha256}
                for row in evidence
                if row.filename
            ],
        },
        "points_reversed": dispute.points_reversed,
        "livemode": dispute.livemode,
        "created": unix(dispute.created_at),
        "closed": unix(dispute.closed_at),
    }


def dispute_changed(dispute: Dispute, type: str) -> None:
    """`dispute.created`, `dispute.updated` (evidence submitted) or `dispute.closed` (won, lost, accepted, expired)."""
    event_emit(merchant=dispute.merchant, type=type, payload=dispute_out(dispute), livemode=dispute.livemode)
