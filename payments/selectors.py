"""Payments: reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from .health import BreakerState, health_store
from .models import Channel, PaymentAttempt
from .routing import load_config

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
