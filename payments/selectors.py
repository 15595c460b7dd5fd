"""Payments: reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Aggregate, Count, IntegerField, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.money import format_minor
from members.models import BindingStatus, Cardholder, LinkedAccount

from .connectors import get_connector
from .connectors.base import AccountBalance, Outcome
from .health import BreakerState, health_store
from .models import Agreement, Channel, PaymentAttempt
from .routing import load_config

logger = logging.getLogger(__name__)
OK_STATES = (PaymentAttempt.Status.AUTHORIZED, PaymentAttempt.Status.CAPTURED, PaymentAttempt.Status.VOIDED)
CHANNEL_FAULTS = (PaymentAttempt.Status.FAILED, PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.REVERSED)


@dataclass(frozen=True)
class ChannelFigures:
    code: str
    volume: int
    approved: int
    declined: int
    channel_faults: int
    success_rate: float | None
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    latency_p99_ms: int | None
    breaker: str


class _Percentile(Aggregate):
    """PostgreSQL's `percentile_disc(fraction) WITHIN GROUP (ORDER BY expression)`: the first value at or above the
    fraction of the ordered values."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = IntegerField()

    def __init__(self, expression: str, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def channel_figures(*, since: timedelta = timedelta(hours=24)) -> list[ChannelFigures]:
    """Volume, success rate, latency percentiles and breaker state per channel, aggregated by the database over the
    attempts of the window (found through the attempts' index on when they were made)."""
    counted = (
        PaymentAttempt.objects.filter(created_at__gte=timezone.now() - since)
        .values("channel_id")
        .annotate(
            volume=Count("pk"),
            approved=Count("pk", filter=Q(status__in=OK_STATES)),
            declined=Count("pk", filter=Q(status=PaymentAttempt.Status.DECLINED)),
            faults=Count("pk", filter=Q(status__in=CHANNEL_FAULTS)),
            p50=_Percentile("latency_ms", 0.50),
            p95=_Percentile("latency_ms", 0.95),
            p99=_Percentile("latency_ms", 0.99),
        )
    )
    by_channel = {row["channel_id"]: row for row in counted}
    config = load_config()
    store = health_store()
    figures = []
    for channel in Channel.objects.order_by("code"):
        row = by_channel.get(channel.pk)
        volume = row["volume"] if row else 0
        info = config.channels.get(channel.pk)
        breaker = store.state(channel.code, info.breaker) if info else BreakerState.CLOSED
        figures.append(
            ChannelFigures(
                code=channel.code,
                volume=volume,
                approved=row["approved"] if row else 0,
                declined=row["declined"] if row else 0,
                channel_faults=row["faults"] if row else 0,
                success_rate=round(row["approved"] / volume, 4) if row and volume else None,
                latency_p50_ms=row["p50"] if row else None,
                latency_p95_ms=row["p95"] if row else None,
                latency_p99_ms=row["p99"] if row else None,
                breaker=str(breaker),
            )
        )
    return figures


@dataclass(frozen=True)
class LinkedBalance:
    account: LinkedAccount
    currency: str = ""
    balance: int | None = None
    available: int | None = None
    error: str = ""

    @property
    def available_display(self) -> str:
        return format_minor(self.available, self.currency) if self.available is not None else ""

    @property
    def balance_display(self) -> str:
        return format_minor(self.balance, self.currency) if self.balance is not None else ""


def linked_balances(*, cardholder: Cardholder) -> list[LinkedBalance]:
    """The cardholder's active linked accounts with their live balance, asked of the channel that keeps each one.

    A channel that does not answer gives that row an error; the others still show."""
    from .methods import ACCOUNT_CHANNEL_KIND

    rows = []
    accounts = LinkedAccount.objects.filter(cardholder=cardholder, status=BindingStatus.ACTIVE).select_related("bank")
    for account in accounts:
        channel = (
            Channel.objects.filter(kind=ACCOUNT_CHANNEL_KIND[account.kind], acquirer=account.bank_id, enabled=True)
            .order_by("id")
            .first()
        )
        if channel is None:
            rows.append(LinkedBalance(account, error=str(_("No channel reaches this account yet."))))
            continue
        try:
            answer = get_connector(channel.connector).account_inquire(account.reference)
        except Exception:
            logger.warning("balance inquiry failed for account %s", account.pk, exc_info=True)
            answer = AccountBalance(Outcome.UNKNOWN)
        if answer.outcome == Outcome.APPROVED:
            rows.append(LinkedBalance(account, answer.currency, answer.balance, answer.available))
        elif answer.outcome == Outcome.DECLINED:
            rows.append(LinkedBalance(account, error=str(_("The bank does not know this account."))))
        else:
            rows.append(
                LinkedBalance(
                    account, error=str(_("%(bank)s is not answering; try again later.") % {"bank": account.bank})
                )
            )
    return rows


def agreements_of(*, cardholder: Cardholder) -> list[Agreement]:
    return list(
        Agreement.objects.filter(cardholder=cardholder)
        .select_related("merchant", "card__product", "linked_account__bank")
        .order_by("revoked_at", "-id")
    )


def payout_channel(*, sponsor_bank_id: int, currency: str, livemode: bool) -> Channel | None:
    """The sponsor bank's licensed channel its merchants' payouts go through in this currency: enabled, flagged for
    payouts, a sandbox one for test mode and never for live (the first by id when the bank flags several)."""
    return (
        Channel.objects.filter(
            acquirer_id=sponsor_bank_id,
            payouts=True,
            enabled=True,
            sandbox=not livemode,
            currencies__contains=[currency],
        )
        .order_by("pk")
        .first()
    )
