"""Merchant jobs: webhook deliveries. Each takes ids or nothing and calls one service."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from core.calendar import local_now
from core.jobs import job_run

from . import services


@shared_task(name="merchants.webhook_deliver")
def webhook_deliver(delivery_id: int, event_created_at: str | None = None) -> str:
    """`event_created_at` (ISO 8601) names the delivery's month; a message sent without it finds the delivery by id."""
    when = datetime.fromisoformat(event_created_at) if event_created_at else None
    return str(services.webhook_deliver(delivery_id=delivery_id, event_created_at=when).status)


@shared_task(name="merchants.webhooks_retry")
def webhooks_retry() -> int:
    """Sends every delivery whose back-off has elapsed: the recent events' due queue, then old events' resends."""
    with job_run("merchants.webhooks_retry", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        due = services.webhook_deliveries_due() + services.webhook_resends_due()
        for delivery_id, event_created_at in due:
            services.webhook_deliver(delivery_id=delivery_id, event_created_at=event_created_at)
            run.advance(1)
    return len(due)
