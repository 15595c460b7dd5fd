"""Reads behind the merchant API: a merchant's payments and refunds, payment-method lookup, quotes and reports.

Every query is scoped to the calling merchant and its key's mode: another merchant's id, or an id of the other mode
(test or live), is simply not found. A refund is of its payment's mode.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from core.calendar import local_now
from core.errors import NotFound
from core.personal import MIN_COHORT
from members.models import BindingStatus, Card, Cardholder
from merchants.models import Merchant, Store

from . import points as payment_points
from . import promotions
from .models import Dispute, PaymentIntent, Refund, SettlementBatch
from .services.common import payment_missing
from .windows import captured_between


def payment_get(*, merchant: Merchant, livemode: bool, payment_id: str) -> PaymentIntent:
    intent: PaymentIntent | None = PaymentIntent.objects.find(
        payment_id,
        lambda payments: payments.select_related("card__bank", "store").filter(merchant=merchant, livemode=livemode),
    )
    if intent is None:
        raise payment_missing(payment_id, merchant, livemode, param="id")
    intent.merchant = merchant  # the caller's merchant is this payment's: no second query for it
    return intent


def payment_list(*, merchant: Merchant, livemode: bool, status: str | None = None) -> QuerySet[PaymentIntent]:
    payments = PaymentIntent.objects.filter(merchant=merchant, livemode=livemode).select_related("card__bank", "store")
    return payments.filter(status=status) if status else payments


def refund_get(*, merchant: Merchant, livemode: bool, refund_id: str) -> Refund:
    try:
        return Refund.objects.select_related("intent").get(
            public_id=refund_id, intent__merchant=merchant, intent__livemode=livemode
        )
    except Refund.DoesNotExist:
        raise NotFound("No such refund.", param="id") from None


def refund_list(*, merchant: Merchant, livemode: bool, payment_id: str | None = None) -> QuerySet[Refund]:
    refunds = Refund.objects.filter(intent__merchant=merchant, intent__livemode=livemode).select_related("intent")
    return refunds.filter(intent__public_id=payment_id) if payment_id else refunds


def card_by_token(*, token: str, param: str = "payment_method.token") -> Card:
    """A live card by the token its holder shared. Unknown and unusable cards look the same to the caller."""
    card = (
        Card.objects.select_related("cardholder", "product", "bank")
        .filter(token=token, status=BindingStatus.ACTIVE)
        .first()
    )
    if card is None:
        raise NotFound("No such card token.", param=param)
    return card


@dataclass(frozen=True)
class QuoteFunding:
    """Who would pay and with what: a card (earning points), or a linked balance (none)."""

    cardholder: Cardholder
    card: Card | None
    method: str


def quote_funding(*, merchant: Merchant, method: dict[str, str], card: Card | None) -> QuoteFunding:
    """What a quote is for, read without using up anything: a live payment code's card or balance, or the card or
    balance of an agreement this merchant holds."""
    from django.utils import timezone

    from .models import Agreement, PaymentCode, PaymentMethod, agreement_token_hash

    if card is not None:
        return QuoteFunding(card.cardholder, card, PaymentMethod.CARD)
    related = ("card__product", "card__bank", "cardholder")
    if method["type"] == "payment_code":
        code = (
            PaymentCode.objects.filter(code=method["code"], used_at__isnull=True, expires_at__gt=timezone.now())
            .select_related(*related)
            .first()
        )
        if code is None:
            raise NotFound("No such payment code (or it was used or has expired).", param="payment_method.code")
        return QuoteFunding(code.cardholder, code.card, PaymentMethod.PAYMENT_CODE)
    agreement = (
        Agreement.objects.filter(
            token_hash=agreement_token_hash(method["token"]), merchant=merchant, revoked_at__isnull=True
        )
        .select_related(*related)
        .first()
    )
    if agreement is None:
        raise NotFound("No such agreement.", param="payment_method.token")
    kind = PaymentMethod.AGREEMENT if agreement.card_id else PaymentMethod.BALANCE
    return QuoteFunding(agreement.cardholder, agreement.card, kind)


def store_get(*, merchant: Merchant, livemode: bool, code: str | None) -> Store | None:
    """One of the merchant's stores in this mode, by its code."""
    if not code:
        return None
    store = Store.objects.filter(merchant=merchant, livemode=livemode, code=code).first()
    if store is None:
        raise NotFound("No such store.", param="store")
    return store


def payment_quote(
    *, merchant: Merchant, livemode: bool, funding: QuoteFunding, amount: int, currency: str, store: Store | None
) -> dict[str, Any]:
    """The price of a payment before it is made: the promotions that would apply (a line each) and why each other
    active one would not, what is left to pay, the points the card would earn on it and those the cardholder holds.
    Priced by the same code as the payment; a random discount shows its range (it is drawn when paying)."""
    from django.utils import timezone

    from rewards.models import Account, OwnerKind, Purpose

    card = funding.card
    context = promotions.context_for(
        merchant=merchant, livemode=livemode, amount=amount, currency=currency, method=funding.method,
        cardholder=funding.cardholder, card=card, store=store, at=timezone.now(),
    )  # fmt: skip
    pricing = promotions.engine.price(context)
    earn = available = program = None
    rate = "0"
    if card is not None:
        probe = PaymentIntent(
            merchant=merchant, card=card, amount=pricing.payable, amount_captured=pricing.payable,
            currency=currency, spend_category=merchant.spend_category,
        )  # fmt: skip
        earn = payment_points.points_for_capture(probe)
        rate = str(payment_points.earning_rate(card, merchant.spend_category))
        rows = list(
            Account.objects.filter(
                owner_kind=OwnerKind.CARDHOLDER, owner_id=card.cardholder_id, purpose=Purpose.POINTS,
                program__bank=card.bank,
            ).values_list("posted", "held", "program__name")
        )  # fmt: skip
        available = sum(posted - held for posted, held, _name in rows) if rows else None
        program = rows[0][2] if rows else None
    return {
        "object": "payment_quote",
        "amount": amount,
        "currency": currency,
        "discount": pricing.discount,
        "amount_payable": pricing.payable,
        "promotions": [line.as_dict() for line in pricing.lines],
        "not_applied": [skipped.as_dict() for skipped in pricing.not_applied],
        "points_to_earn": earn,
        "promotion_points": pricing.points,
        "earning_rate": rate,
        "points_program": program,
        "points_available": available,
    }


# --- settlements ----------------------------------------------------------------------------------------------------
# A merchant sees its batches once built: a batch still being built has no final figures yet.


def settlement_list(
    *,
    merchant: Merchant,
    livemode: bool,
    status: str | None = None,
    settle_on_gte: dt.date | None = None,
    settle_on_lte: dt.date | None = None,
) -> QuerySet[SettlementBatch]:
    batches = SettlementBatch.objects.filter(merchant=merchant, livemode=livemode).exclude(
        status=SettlementBatch.Status.BUILDING
    )
    if status:
        batches = batches.filter(status=status)
    if settle_on_gte is not None:
        batches = batches.filter(settle_on__gte=settle_on_gte)
    if settle_on_lte is not None:
        batches = batches.filter(settle_on__lte=settle_on_lte)
    return batches


def settlement_get(*, merchant: Merchant, livemode: bool, settlement_id: str) -> SettlementBatch:
    batch = settlement_list(merchant=merchant, livemode=livemode).filter(public_id=settlement_id).first()
    if batch is None:
        raise NotFound("No such settlement.", param="id")
    return batch


# --- report ---------------------------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    count: int = 0
    volume: int = 0
    alliance_volume: int = 0
    by_cardholder: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, amount: int, cardholder_id: int, alliance_card: bool) -> None:
        self.count += 1
        self.volume += amount
        if alliance_card:
            self.alliance_volume += amount
        self.by_cardholder[cardholder_id] += 1

    def render(self) -> dict[str, Any]:
        cardholders = len(self.by_cardholder)
        shown = cardholders >= MIN_COHORT
        repeat = sum(1 for count in self.by_cardholder.values() if count > 1)
        return {
            "count": self.count,
            "volume": self.volume,
            "average_ticket": self.volume // self.count if self.count else 0,
            "suppressed": not shown,
            "cardholders": cardholders if shown else None,
            "alliance_card_share": round(self.alliance_volume / self.volume, 4) if shown and self.volume else None,
            "repeat_rate": round(repeat / cardholders, 4) if shown else None,
        }


def merchant_summary(
    *, merchant: Merchant, livemode: bool, date_from: dt.date, date_to: dt.date, currency: str
) -> dict[str, Any]:
    """Captured payments of one mode by local day of capture. Cardholder figures only for groups of at least
    MIN_COHORT."""
    tz = local_now().tzinfo
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    rows = (
        PaymentIntent.objects.filter(
            merchant=merchant,
            livemode=livemode,
            currency=currency,
            amount_captured__gt=0,
        )
        .filter(captured_between(start, end))
        .values_list("captured_at", "amount_captured", "amount_refunded", "cardholder_id", "card__bank_id", "method")
    )
    total = _Bucket()
    days: dict[dt.date, _Bucket] = defaultdict(_Bucket)
    for captured_at, captured, refunded, cardholder_id, card_bank, method in rows:
        if captured_at is None:
            continue  # excluded by the filter; keeps the type checker honest
        net = captured - refunded
        alliance_card = card_bank is not None and method == "card"
        total.add(net, cardholder_id, alliance_card)
        days[captured_at.astimezone(tz).date()].add(net, cardholder_id, alliance_card)
    return {
        "object": "report.summary",
        "livemode": livemode,
        "currency": currency,
        "date_from": date_from.isoformat(),
        "date_to": date_to.isoformat(),
        "min_cohort": MIN_COHORT,
        "total": total.render(),
        "by_day": [{"date": day.isoformat(), **days[day].render()} for day in sorted(days)],
    }


# --- disputes -------------------------------------------------------------------------------------------------------


def dispute_list(
    *, merchant: Merchant, livemode: bool, status: str | None = None, kind: str | None = None
) -> QuerySet[Dispute]:
    disputes = (
        Dispute.objects.filter(merchant=merchant, livemode=livemode)
        .select_related("payment")
        .prefetch_related("evidence")
    )
    if status:
        disputes = disputes.filter(status=status)
    return disputes.filter(kind=kind) if kind else disputes
