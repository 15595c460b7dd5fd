"""Which channels may carry a payment, best first.

For now the order is the expected fee (percent × amount + fixed), then the channel code; rules, strategies, health and
circuit breakers refine this in the routing engine.
"""

from __future__ import annotations

from decimal import Decimal

from members.models import MemberBank

from .models import Channel, PaymentIntent


def channel_can_carry(channel: Channel, intent: PaymentIntent) -> bool:
    return (
        channel.enabled
        and intent.method in (channel.methods or [])
        and intent.currency in (channel.currencies or [])
        and channel.min_amount <= intent.amount <= channel.max_amount
        and channel.acquirer.acquiring_licence
        and channel.acquirer.status == MemberBank.Status.ACTIVE
    )


def expected_fee(channel: Channel, amount: int) -> Decimal:
    return channel.fee_percent * Decimal(amount) / 100 + channel.fee_fixed


def candidate_channels(intent: PaymentIntent) -> list[Channel]:
    channels = [
        c for c in Channel.objects.select_related("acquirer").filter(enabled=True) if channel_can_carry(c, intent)
    ]
    return sorted(channels, key=lambda c: (expected_fee(c, intent.amount), c.code))
