"""Settlement's test data at the model level: payments captured on a chosen business date with their fee split as the
capture records it, and succeeded refunds handing their fee back by the cumulative rule."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone

from payments import fees
from payments.models import FeeParty, FeeSchedule, FeeSplit, PaymentIntent, Refund
from tests.factories import CardFactory, CardProductFactory, ChannelFactory, MemberBankFactory, MerchantFactory

SH = ZoneInfo("Asia/Shanghai")
_serial = itertools.count(1)


def make_world() -> dict[str, Any]:
    """A merchant at its sponsor bank's channel, a second acquirer's channel, a card at another bank, and the default
    fee schedule: 0.6 %, shared 60 / 25 / 10 / 5 by issuer, acquirer, channel and alliance."""
    sponsor, issuer, other_acquirer = MemberBankFactory(), MemberBankFactory(), MemberBankFactory()
    merchant = MerchantFactory(sponsor_bank=sponsor)
    card = CardFactory(product=CardProductFactory(bank=issuer))
    channel = ChannelFactory(acquirer=sponsor)
    other_channel = ChannelFactory(acquirer=other_acquirer)
    schedule = FeeSchedule.objects.create(
        mdr_percent=Decimal("0.6"),
        issuer_share=Decimal("60"),
        acquirer_share=Decimal("25"),
        channel_share=Decimal("10"),
        alliance_share=Decimal("5"),
        effective_from=timezone.now() - dt.timedelta(days=400),
    )
    return {
        "merchant": merchant,
        "sponsor": sponsor,
        "issuer": issuer,
        "other_acquirer": other_acquirer,
        "card": card,
        "channel": channel,
        "other_channel": other_channel,
        "schedule": schedule,
    }


def at(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=SH)


def pay(
    world: dict[str, Any],
    amount: int,
    day: dt.date,
    *,
    captured_at: dt.datetime | None = None,
    merchant: Any = None,
    channel: Any = None,
    fee: int | None = None,
    livemode: bool = True,
    currency: str = "CNY",
) -> PaymentIntent:
    """A payment captured with business date `day`, its fee (0.6 %, or `fee` hundredths) split as the capture does."""
    channel = channel or world["channel"]
    intent = PaymentIntent.objects.create(
        merchant=merchant or world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        issuer=world["issuer"],
        acquirer=channel.acquirer,
        channel=channel,
        amount=amount,
        amount_captured=amount,
        currency=currency,
        status=PaymentIntent.Status.SUCCEEDED,
        business_date=day,
        captured_at=captured_at or at(day),
        # Made when captured: its business date is held to the capture window from its creation.
        created_at=captured_at or at(day),
        livemode=livemode,
    )
    if livemode:
        schedule = world["schedule"]
        charged = fees.fee_for(schedule, amount) if fee is None else fee
        banks = {
            FeeParty.ISSUER: intent.issuer_id,
            FeeParty.ACQUIRER: intent.acquirer_id,
            FeeParty.CHANNEL: channel.acquirer_id,
            FeeParty.ALLIANCE: None,
        }
        FeeSplit.objects.bulk_create(
            FeeSplit(
                payment=intent,
                payment_created_at=intent.created_at,
                schedule=schedule,
                event=FeeSplit.Event.CAPTURE,
                party=party,
                bank_id=banks[party],
                amount=part,
            )
            for party, part in fees.split(schedule, charged).items()
        )
        intent.fee = charged
        intent.save(update_fields=["fee"])
    return intent


def refund(
    intent: PaymentIntent,
    amount: int,
    day: dt.date,
    *,
    completed_at: dt.datetime | None = None,
    promotion_cost_returned: int = 0,
    cofunding_returned: int = 0,
) -> Refund:
    """A succeeded refund with business date `day`, its fee handed back by the cumulative rule."""
    intent.refresh_from_db()
    intent.amount_refund_reserved += amount
    intent.amount_refunded += amount
    made = Refund.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,
        merchant_id=intent.merchant_id,
        amount=amount,
        status=Refund.Status.SUCCEEDED,
        reference=f"{intent.public_id}-r{next(_serial)}",
        business_date=day,
        completed_at=completed_at or at(day, 15),
        promotion_cost_returned=promotion_cost_returned,
        cofunding_returned=cofunding_returned,
    )
    fees.record_refund(intent, made)
    intent.save(update_fields=["amount_refund_reserved", "amount_refunded", "fee_returned"])
    return made
