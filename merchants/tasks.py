"""Merchant jobs: webhook deliveries. Each takes ids or nothing and calls one service."""

from __future__ import annotations

from celery import shared_task

from core.calendar import local_now
from core.jobs import job_run

from . import services


@shared_task(name="merchants.webhook_deliver")
def webhook_deliver(delivery_id: int) -> str:
    return str(services.webhook_deliver(delivery_id=delivery_id).status)


@shared_task(name="merchants.webhooks_retry")
def webhooks_retry() -> int:
    """Sends every delivery whose back-off has elapsed."""
    with job_run("merchants.webhooks_retry", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        due = services.webhook_deliveries_due()
        for delivery_id in due:
            services.webhook_deliver(delivery_id=delivery_id)
            run.advance(1)
    return len(due)
