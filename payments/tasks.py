"""Payment jobs: each takes ids or nothing, runs one service inside a recorded job run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task

from core.calendar import local_now
from core.jobs import job_run

from . import services
from .models import Channel


@shared_task(name="payments.attempts_resolve")
def attempts_resolve() -> dict[str, Any]:
    """Settles attempts and refunds whose outcome is unknown (timeouts, crashes) by inquiry, then reversal."""
    with job_run("payments.attempts_resolve", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        report = services.attempts_resolve()
        run.advance(
            report.examined, charged=report.charged, not_charged=report.not_charged, still_unknown=report.still_unknown
        )
    return vars(report)


@shared_task(name="payments.authorizations_expire")
def authorizations_expire() -> int:
    with job_run("payments.authorizations_expire", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        expired = services.authorizations_expire()
        run.advance(expired, expired=expired)
    return expired


@shared_task(name="payments.risk_reviews_expire")
def risk_reviews_expire() -> int:
    """Voids payments held for risk review that nobody decided on by their deadline."""
    with job_run("payments.risk_reviews_expire", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        expired = services.risk_reviews_expire()
        run.advance(expired, expired=expired)
    return expired


@shared_task(name="payments.orphans_sweep")
def orphans_sweep() -> dict[str, int]:
    """Reverses charges a channel holds that no payment of ours accounts for."""
    totals = {"examined": 0, "orphans_reversed": 0, "orphans_unresolved": 0}
    with job_run("payments.orphans_sweep", period=local_now().strftime("%Y-%m-%dT%H")) as run:
        for channel in Channel.objects.filter(enabled=True).select_related("acquirer"):
            report = services.orphans_sweep(channel=channel)
            for name in totals:
                totals[name] += getattr(report, name)
            run.advance(1, **{name: getattr(report, name) for name in totals})
    return totals


@shared_task(name="payments.channels_probe")
def channels_probe() -> dict[str, str]:
    """Probes channels whose breaker is not closed, and records per-channel figures in the job run."""
    from .selectors import channel_figures

    with job_run("payments.channels_probe", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        states = services.channels_probe()
        for figures in channel_figures(since=timedelta(minutes=15)):
            run.count(**{f"{figures.code}.volume": figures.volume, f"{figures.code}.faults": figures.channel_faults})
        run.advance(len(states), open=sum(1 for state in states.values() if state == "open"))
    return states


@shared_task(name="payments.payouts_send")
def payouts_send() -> dict[str, dict[str, int]]:
    """Makes the payouts settled batches are owed (and returned ones whose account changed), then sends those ready."""
    with job_run("payments.payouts_send", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        made = services.payouts_create()
        run.advance(made.examined, **made.counts())
        sent = services.payouts_send()
        run.advance(sent.examined, **sent.counts())
    return {"made": made.counts(), "sent": sent.counts()}


@shared_task(name="payments.payouts_poll")
def payouts_poll() -> dict[str, int]:
    """Asks the channels about sent payouts: paid or returned, or sent again under the same reference."""
    with job_run("payments.payouts_poll", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        report = services.payouts_poll()
        run.advance(report.examined, **report.counts())
    return report.counts()


@shared_task(name="payments.settlement_t1")
def settlement_t1() -> list[dict[str, Any]]:
    """Settles T+1 merchants: every business date whose settlement day has come and that is not settled yet."""
    return [vars(report) for report in services.settle_due_t1()]


@shared_task(name="payments.settlement_t0")
def settlement_t0() -> list[dict[str, Any]]:
    """Settles T+0 merchants: the window that just closed (and any missed in the last day)."""
    return [vars(report) for report in services.settle_due_t0()]


@shared_task(name="payments.reconcile")
def reconcile() -> dict[str, int]:
    """Fetches, imports and matches each channel's statement once its day is over (after its cut-off), and asks again
    with back-off for a file that is late; a day fetched already is left alone."""
    return vars(services.reconcile_due())


@shared_task(name="payments.disputes_expire")
def disputes_expire() -> int:
    """Closes open disputes past their deadline with no answer sent (expired: the merchant bears them)."""
    with job_run("payments.disputes_expire", period=local_now().strftime("%Y-%m-%dT%H")) as run:
        expired = services.disputes_expire()
        run.advance(expired, expired=expired)
    return expired


@shared_task(name="payments.disputes_poll")
def disputes_poll() -> dict[str, int]:
    """Reads each channel's dispute notices (opened, decided) and applies them; sends again the answers a channel
    did not confirm."""
    totals: dict[str, int] = {}
    with job_run("payments.disputes_poll", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        for channel in Channel.objects.order_by("id"):
            counts = services.disputes_poll(channel=channel).counts()
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
            run.advance(1, **counts)
    return totals


@shared_task(name="payments.dispute_answer_send")
def dispute_answer_send(dispute_id: int) -> str:
    """Sends a merchant's answer to the channel; one not taken stays for an operator's "Send the answer"."""
    return services.dispute_answer_send(dispute_id).public_id
