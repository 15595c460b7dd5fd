"""Ledger jobs: sealing, lot expiry and hold expiry; and voucher expiry. Each takes no ids (they sweep) and calls one
service; the expiries report each chunk's progress on their job run."""

from __future__ import annotations

from typing import IO, Any

from celery import shared_task
from django.utils import timezone

from core.jobs import job_run

from . import sealing, services


def run_ledger_seal(echo: IO[str] | None = None) -> int:
    with job_run("rewards.ledger_seal", period=timezone.now().strftime("%Y-%m-%dT%H:%M"), echo=echo) as run:
        made = sealing.seal_pending()
        run.count(seals=made)
    return made


@shared_task(name="rewards.ledger_seal")
def ledger_seal() -> dict[str, Any]:
    return {"seals": run_ledger_seal()}


@shared_task(name="rewards.lots_expire")
def lots_expire() -> dict[str, Any]:
    day = services.today()
    with job_run("rewards.lots_expire", period=day.isoformat()) as run:
        return services.lots_expire(on=day, progress=run.advance)


@shared_task(name="rewards.holds_expire")
def holds_expire() -> dict[str, Any]:
    now = timezone.now()
    with job_run("rewards.holds_expire", period=now.strftime("%Y-%m-%dT%H:%M")) as run:
        return {"expired": services.holds_expire(now=now, progress=run.advance)}


@shared_task(name="rewards.vouchers_expire")
def vouchers_expire() -> dict[str, Any]:
    now = timezone.now()
    with job_run("rewards.vouchers_expire", period=now.strftime("%Y-%m-%dT%H:%M")) as run:
        return services.vouchers_expire(now=now, progress=run.advance)
