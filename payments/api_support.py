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
from members.models import BindingStatus, Card
from merchants.models import Merchant

from . import points as payment_points
from .models import PaymentIntent, Refund

# Figures about cardholders are shown only for groups at least this large, so no one can be singled out.
MIN_COHORT = 20


def payment_get(*, merchant: Merchant, livemode: bool, payment_id: str) -> PaymentIntent:
    try:
        intent = PaymentIntent.objects.select_related("card__bank").get(
            public_id=payment_id, merchant=merchant, livemode=livemode
        )
    except PaymentIntent.DoesNotExist:
        raise NotFound("No such payment.", param="id") from None
    intent.merchant = merchant  # the caller's merchant is this payment's: no second query for it
    return intent


def payment_list(*, merchant: Merchant, livemode: bool, status: str | None = None) -> QuerySet[PaymentIntent]:
    payments = PaymentIntent.objects.filter(merchant=merchant, livemode=livemode).select_related("card__bank")
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
class Quote:
    points_to_earn: int
    earning_rate: str
    points_available: int | None
    program: str | None


def quote_card(*, merchant: Merchant, method: dict[str, str], card: Card | None) -> Card:
    """The card a quote is for, read without using up anything: a live payment code's card, or the card of an
    agreement this merchant holds. Balances earn no card points, so they have no quote."""
    from django.utils import timezone

    from core.errors import NotFound, ValidationFailed

    from .models import Agreement, PaymentCode, agreement_token_hash

    if card is not None:
        return card
    found: Card | None
    if method["type"] == "payment_code":
        code = (
            PaymentCode.objects.filter(code=method["code"], used_at__isnull=True, expires_at__gt=timezone.now())
            .select_related("card__product", "card__cardholder")
            .first()
        )
        if code is None:
            raise NotFound("No such payment code (or it was used or has expired).", param="payment_method.code")
        found = code.card
    else:
        agreement = (
            Agreement.objects.filter(
                token_hash=agreement_token_hash(method["token"]), merchant=merchant, revoked_at__isnull=True
            )
            .select_related("card__product", "card__cardholder")
            .first()
        )
        if agreement is None:
            raise NotFound("No such agreement.", param="payment_method.token")
        found = agreement.card
    if found is None:
        raise ValidationFailed(
            "This payment is funded by a balance: it earns no card points to quote.", param="payment_method"
        )
    return found


def payment_quote(*, merchant: Merchant, card: Card, amount: int, currency: str) -> Quote:
    """Points the cardholder would earn on `amount` here, and the points they hold in the issuer's programme."""
    from rewards.models import Account, OwnerKind, Purpose

    probe = PaymentIntent(
        merchant=merchant, card=card, amount=amount, amount_captured=amount, currency=currency,
        spend_category=merchant.spend_category,
    )  # fmt: skip
    earn = payment_points.points_for_capture(probe)
    wallets = Account.objects.filter(
        owner_kind=OwnerKind.CARDHOLDER, owner_id=card.cardholder_id, purpose=Purpose.POINTS, program__bank=card.bank
    ).values_list("posted", "held", "program__name")
    rows = list(wallets)
    available = sum(posted - held for posted, held, _code in rows) if rows else None
    program = rows[0][2] if rows else None
    return Quote(
        points_to_earn=earn,
        earning_rate=str(payment_points.earning_rate(card, merchant.spend_category)),
        points_available=available,
        program=program,
    )


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
    rows = PaymentIntent.objects.filter(
        merchant=merchant,
        livemode=livemode,
        currency=currency,
        amount_captured__gt=0,
        captured_at__gte=start,
        captured_at__lt=end,
    ).values_list("captured_at", "amount_captured", "amount_refunded", "cardholder_id", "card__bank_id", "method")
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
