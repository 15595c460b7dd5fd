"""A settlement run killed outright between chunks, then run again: no duplicate, no gap, totals equal the payments'.

The run is a real process (`manage.py settle`) against the test database, two merchants a chunk, waiting after each
chunk; it is SIGKILLed once its first chunk has committed. Transactional: the process must see committed rows."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import Count, Sum

from core.jobs import ABANDONED, job_run_alive
from core.models import JobRun
from payments import services
from payments.models import PaymentIntent, Refund, ReservePolicy, SettlementBatch, SettlementLine
from tests.factories import MerchantFactory
from tests.payments.settling import make_world, pay, refund

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 24)  # a Tuesday in a plain week: no holiday rows needed (a flush may have removed them)
MERCHANTS = 6
CHUNK = 2


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    if host.startswith("/"):  # a unix socket's directory (the embedded server): given as the `host` option
        return f"postgres://{auth}@:{port}/{db['NAME']}?host={quote(host)}"
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def _wait(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_killed_between_chunks_and_run_again_settles_every_payment_once(tmp_path: Path, workers: int) -> None:
    """One worker: killed while it waits after its first chunk. Two: killed once either has committed a chunk, the
    other perhaps in the middle of one (which then never happened)."""
    ReservePolicy.objects.get_or_create(risk_grade="low", defaults={"percent": 0, "hold_working_days": 0})
    world = make_world()
    merchants = [MerchantFactory(sponsor_bank=world["sponsor"]) for _ in range(MERCHANTS)]
    for index, merchant in enumerate(merchants):
        for amount in (1_000 + index, 20_000 + index, 333):
            made = pay(world, amount, DAY, merchant=merchant)
        refund(made, 111, DAY)
    log = tmp_path / "settle.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "settings.test",
        "SETTLEMENT_CHUNK_PAUSE": "60",  # long enough to be killed between the first chunk and the second
        "SETTLEMENT_WORKERS": str(workers),
    }
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "settle", "--cycle", "t1", "--period", DAY.isoformat(),
             "--chunk-merchants", str(CHUNK)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait(lambda: SettlementBatch.objects.exists() or worker.poll() is not None, "the first chunk")
        assert worker.poll() is None, log.read_text()
        time.sleep(0.5)  # a second worker's chunk may be just committing, or not
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    run = JobRun.objects.get(job="settlement.t1", period=DAY.isoformat())
    assert run.status == JobRun.Status.RUNNING  # it never got to say it stopped
    _wait(lambda: not job_run_alive("settlement.t1", DAY.isoformat()), "the killed session's lock to go")
    # What the killed run left: whole chunks, each with all its lines, and nothing of a chunk cut short.
    settled = set(SettlementBatch.objects.values_list("merchant_id", flat=True))
    chunks = [{merchant.pk for merchant in merchants[n : n + CHUNK]} for n in range(0, MERCHANTS, CHUNK)]
    assert all(chunk <= settled or not chunk & settled for chunk in chunks), settled
    assert settled
    assert settled != set().union(*chunks)
    if workers == 1:
        assert settled == chunks[0]
    assert SettlementLine.objects.filter(kind="payment").count() == len(settled) * 3

    report = services.settle("t1", DAY.isoformat(), chunk_merchants=CHUNK)

    assert (report.merchants, report.batches) == (MERCHANTS - len(settled), MERCHANTS - len(settled))
    run.refresh_from_db()
    assert (run.status, run.error) == (JobRun.Status.FAILED, ABANDONED)
    rerun = JobRun.objects.get(job="settlement.t1", period=DAY.isoformat(), status="succeeded")
    assert rerun.done == MERCHANTS - len(settled)
    payments = PaymentIntent.objects.filter(merchant__in=merchants)
    # No duplicate: each payment and refund on one line; no gap: every one of them on a line.
    lines = SettlementLine.objects.filter(kind="payment").values("payment").annotate(n=Count("id"))
    assert {row["payment"]: row["n"] for row in lines} == dict.fromkeys(payments.values_list("pk", flat=True), 1)
    refunds = Refund.objects.filter(intent__merchant__in=merchants)
    assert sorted(SettlementLine.objects.filter(kind="refund").values_list("refund", flat=True)) == sorted(
        refunds.values_list("pk", flat=True)
    )
    # Totals equal the payments', merchant by merchant.
    assert SettlementBatch.objects.count() == MERCHANTS
    for merchant in merchants:
        batch = SettlementBatch.objects.get(merchant=merchant, period=DAY.isoformat())
        mine = payments.filter(merchant=merchant)
        assert batch.gross == mine.aggregate(total=Sum("amount_captured"))["total"]
        assert batch.refunds == refunds.filter(intent__merchant=merchant).aggregate(total=Sum("amount"))["total"]
        assert (
            batch.fees == mine.aggregate(total=Sum("fee"))["total"] - mine.aggregate(total=Sum("fee_returned"))["total"]
        )
        assert batch.net == batch.gross - batch.refunds - batch.fee_total
        assert batch.status == SettlementBatch.Status.SETTLED
    assert services.settle("t1", DAY.isoformat()).batches == 0  # and once more: nothing
