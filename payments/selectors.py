"""Payments: reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

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


def _percentile(ordered: list[int], fraction: float) -> int | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def channel_figures(*, since: timedelta = timedelta(hours=24)) -> list[ChannelFigures]:
    """Volume, success rate, latency percentiles and breaker state per channel, from the recorded attempts."""
    start = timezone.now() - since
    rows = PaymentAttempt.objects.filter(created_at__gte=start).values_list("channel__code", "status", "latency_ms")
    by_channel: dict[str, list[tuple[str, int | None]]] = {}
    for code, status, latency in rows:
        by_channel.setdefault(code, []).append((status, latency))
    config = load_config()
    store = health_store()
    figures = []
    for channel in Channel.objects.order_by("code"):
        attempts = by_channel.get(channel.code, [])
        approved = sum(1 for status, _ in attempts if status in OK_STATES)
        declined = sum(1 for status, _ in attempts if status == PaymentAttempt.Status.DECLINED)
        faults = sum(1 for status, _ in attempts if status in CHANNEL_FAULTS)
        latencies = sorted(latency for _, latency in attempts if latency is not None)
        info = config.channels.get(channel.pk)
        breaker = store.state(channel.code, info.breaker) if info else BreakerState.CLOSED
        figures.append(
            ChannelFigures(
                code=channel.code,
                volume=len(attempts),
                approved=approved,
                declined=declined,
                channel_faults=faults,
                success_rate=round(approved / len(attempts), 4) if attempts else None,
                latency_p50_ms=_percentile(latencies, 0.50),
                latency_p95_ms=_percentile(latencies, 0.95),
                latency_p99_ms=_percentile(latencies, 0.99),
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
