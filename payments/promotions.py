"""The payments side of the promotions engine: the context a payment is priced in, and the calls that move its
promotions' budgets with the payment (reserve on create, consume on capture, release on failure or cancellation,
return on refunds). The engine itself is `rewards.services.promotions`; it never reads payments."""

from __future__ import annotations

import datetime as dt
from typing import Any

from members.models import Card, Cardholder, ConsentPurpose
from members.selectors import consent_granted
from merchants.models import Merchant, Store
from rewards import services as rewards_services

from . import points as payment_points
from .models import PaymentIntent

engine = rewards_services.promotions


def context_for(
    *,
    merchant: Merchant,
    livemode: bool,
    amount: int,
    currency: str,
    method: str,
    cardholder: Cardholder | None,
    card: Card | None,
    store: Store | None,
    at: dt.datetime,
) -> engine.Context:
    """A payment (or a quote) as the engine sees it. Points kinds need a live card payment in the issuer's
    programme; a test-mode payment never creates points."""
    program = payment_points.program_of_bank(card.bank_id) if card is not None and livemode else None

    def first_purchase() -> bool:
        if cardholder is None:
            return False
        return not PaymentIntent.objects.filter(
            merchant=merchant, cardholder=cardholder, livemode=livemode, amount_captured__gt=0
        ).exists()

    def segments() -> frozenset[str]:
        # Segments are personal data used for targeting: read only with the cardholder's consent, asked now.
        if cardholder is None or not cardholder.segment_tags:
            return frozenset()
        if not consent_granted(cardholder, ConsentPurpose.PERSONALISED_OFFERS):
            return frozenset()
        return frozenset(str(tag) for tag in cardholder.segment_tags)

    return engine.Context(
        merchant_id=merchant.pk,
        livemode=livemode,
        currency=currency,
        amount=amount,
        at=at,
        method=method,
        category=merchant.spend_category,
        store_id=store.pk if store is not None else None,
        cardholder_id=cardholder.pk if cardholder is not None else None,
        card_id=card.pk if card is not None else None,
        card_bank_id=card.bank_id if card is not None else None,
        card_product_id=card.product_id if card is not None else None,
        card_tier=card.product.tier if card is not None else None,
        earning_rate=payment_points.earning_rate(card, merchant.spend_category) if card is not None else 0,  # type: ignore[arg-type]
        program=program,
        first_purchase=first_purchase,
        segments=segments,
    )


def on_capture(intent: PaymentIntent) -> dict[str, Any]:
    """Consumes the captured share of the payment's promotions (in the capture's transaction); the fields of the
    payment that change with it."""
    if not intent.promotions:
        return {}
    program = payment_points.issuer_program(intent) if intent.livemode and intent.card_id else None
    lines = engine.consume(
        payment=intent.public_id,
        captured=engine.Captured(
            cardholder_id=intent.cardholder_id,
            # Vouchers are live objects: a test-mode payment never takes one from the catalogue (nor its stock).
            card_id=intent.card_id if intent.livemode else None,
            captured=intent.amount_captured,
            authorized=intent.amount,
            earned=intent.points_earned,
            program=program,  # type: ignore[arg-type]
        ),
        priced=intent.promotions,
    )
    return {"promotions": lines, "promotion_points": sum(line["points"] for line in lines)}


def on_release(intent: PaymentIntent) -> None:
    """The payment failed or was cancelled before capture: its promotions' budgets go back."""
    if intent.promotions:
        engine.release(payment=intent.public_id)


def on_refund(intent: PaymentIntent, *, refunded_total: int, cause: str) -> engine.RefundReturn:
    """Refunds so far hand back promotion cost and points cumulatively: the promotion points reversed now, and the
    merchant-funded cost handed back now (the refund's `promotion_cost_returned`)."""
    if not intent.promotions or intent.amount_captured <= 0:
        return engine.RefundReturn()
    return engine.refund_return(
        payment=intent.public_id, refunded_total=refunded_total, captured_total=intent.amount_captured, cause=cause
    )
