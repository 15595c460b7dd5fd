"""Job runs: every task and management command reports its progress through `job_run`.

    with job_run("points.expire", period="2026-11-22", total=n, echo=self.stdout) as run:
        for chunk in chunks:
            ...
            run.advance(len(chunk), expired=len(chunk))

A run is recorded as a `JobRun` row (status, progress, counts, error); a second run of the same job and period while one
is running is refused, so a job started twice by beat and by hand does not run twice at once.

Who is running: a live run holds a PostgreSQL session advisory lock on its job and period for as long as it runs. A
process killed outright (SIGKILL, the machine lost) cannot mark its row finished, but the server ends its session and
frees the lock at once. So a new run first tries the lock: held, the other run is alive and the new one is refused
(`Conflict`); free, any row still "running" for that job and period is a dead run's, which the new run marks failed
("abandoned") before recording itself. No staleness limit to tune, and a slow run is never taken over while it is
alive. The unique constraint on running rows stays as the backstop. A pooler in transaction mode (PgBouncer) would
hand the lock's server session to other clients between transactions, so a process whose DATABASE_URL goes through
one (`DATABASE_TRANSACTION_POOLING`) is refused a job run: jobs connect directly (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import OutputWrapper
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .errors import Conflict
from .models import JobRun
from .requestid import get_request_id

_SAVE_EVERY_SECONDS = 1.0
_REDRAW_SECONDS = {True: 0.5, False: 60.0}  # a terminal redraws the bar in place; a log, once a minute at most
ABANDONED = "abandoned: the process running it ended without finishing; taken over by a new run"
# Session advisory locks are re-entrant within a session: the keys this thread's connection holds, so that a second
# run of the same job and period in one process is refused like one from another process.
_held = threading.local()


class _BarOutput:
    """Where a progress bar draws: tqdm writes each redraw as "\\r" and the bar without a newline, which a command's
    `OutputWrapper` would otherwise end with one, leaving a new line per redraw."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, text: str) -> None:
        if isinstance(self.out, OutputWrapper):
            self.out.write(text, ending="")
        else:
            self.out.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno: the stream's own
        return getattr(self.out, name)


class JobProgress:
    def __init__(self, run: JobRun, bar: Any | None) -> None:
        self.run = run
        self._bar = bar
        self._last_save = time.monotonic()

    def set_total(self, total: int) -> None:
        self.run.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()
        self._save(force=True)

    def advance(self, n: int = 1, **counts: int) -> None:
        self.run.done += n
        for key, value in counts.items():
            self.run.counts[key] = self.run.counts.get(key, 0) + value
        if self._bar is not None:
            self._bar.update(n)
        self._save()

    def count(self, **counts: int) -> None:
        self.advance(0, **counts)

    def _save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_save >= _SAVE_EVERY_SECONDS:
            JobRun.objects.filter(pk=self.run.pk).update(
                done=self.run.done, total=self.run.total, counts=self.run.counts
            )
            self._last_save = now


@contextmanager
def job_run(
    job: str, *, period: str = "", total: int | None = None, echo: IO[str] | None = None
) -> Iterator[JobProgress]:
    """Records a run of `job` for `period`; with `echo` (a command's stdout) it draws a progress bar there."""
    key = _lock_key(job, period)
    held: set[int] = _held.__dict__.setdefault("keys", set())
    if key in held or not _try_lock(key):
        raise Conflict(f"Job {job} for {period or 'this period'} is already running.", code="job_running")
    held.add(key)
    try:
        run = _start(job, period, total)
    except BaseException:
        _unlock(key)
        held.discard(key)
        raise
    bar = None
    if echo is not None:
        from tqdm import tqdm

        terminal = bool(getattr(echo, "isatty", lambda: False)())
        bar = tqdm(
            total=total,
            desc=job,
            file=_BarOutput(echo),
            unit="row",
            dynamic_ncols=True,
            mininterval=_REDRAW_SECONDS[terminal],
        )
    progress = JobProgress(run, bar)
    try:
        yield progress
    except BaseException as exc:
        run.status = JobRun.Status.FAILED
        run.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
        raise
    else:
        run.status = JobRun.Status.SUCCEEDED
    finally:
        if bar is not None:
            bar.close()
        run.finished_at = timezone.now()
        try:
            JobRun.objects.filter(pk=run.pk).update(
                status=run.status,
                finished_at=run.finished_at,
                done=run.done,
                total=run.total,
                counts=run.counts,
                error=run.error,
            )
        finally:
            _unlock(key)
            held.discard(key)


def _start(job: str, period: str, total: int | None) -> JobRun:
    """The run's row, under the lock: a row still "running" for this job and period is a dead run's (its lock was
    free), marked failed first."""
    try:
        with transaction.atomic():
            JobRun.objects.filter(job=job, period=period, status=JobRun.Status.RUNNING).update(
                status=JobRun.Status.FAILED, finished_at=timezone.now(), error=ABANDONED
            )
            return JobRun.objects.create(job=job, period=period, total=total, request_id=get_request_id())
    except IntegrityError as exc:  # a run that took no lock (started before locks were taken)
        raise Conflict(f"Job {job} for {period or 'this period'} is already running.", code="job_running") from exc


def _lock_key(job: str, period: str) -> int:
    digest = hashlib.blake2b(f"jobrun\0{job}\0{period}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _try_lock(key: int) -> bool:
    if settings.DATABASE_TRANSACTION_POOLING:
        raise ImproperlyConfigured(
            "Job runs hold a session advisory lock, which a pooler in transaction mode cannot keep: run jobs in a "
            "process that connects to PostgreSQL directly (DATABASE_TRANSACTION_POOLING unset)."
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def _unlock(key: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def job_run_alive(job: str, period: str = "") -> bool:
    """Whether some session holds the lock of `job` and `period`: a live run (in this process or another)."""
    key = _lock_key(job, period)
    if key in _held.__dict__.get("keys", set()):
        return True
    # A bigint advisory key shows in pg_locks as its high and low 32 bits.
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1)",
            [high, low],
        )
        return bool(cursor.fetchone()[0])


# --- which jobs bank operators watch, and which can be re-run from the admin -----------------------------------------


@dataclass(frozen=True)
class JobKind:
    """A job as the admin knows it. `shared`: it works on every member bank's data (settlement, clearing, expiries,
    reconciliation), so every bank's operators see its runs; the others (housekeeping, demo seeding) are the alliance
    operators' alone. `task`: the Celery task that runs it, the entry point a re-run calls (empty: not re-run from the
    admin). A job's entry point is idempotent, so a re-run redoes only what is not done."""

    name: str
    shared: bool = True
    task: str = ""


_kinds: dict[str, JobKind] = {}


def register_job(name: str, *, shared: bool = True, task: str = "") -> None:
    """Apps declare their jobs from `AppConfig.ready()`."""
    _kinds[name] = JobKind(name=name, shared=shared, task=task)


def job_kind(name: str) -> JobKind | None:
    return _kinds.get(name)


def shared_jobs() -> list[str]:
    return sorted(name for name, kind in _kinds.items() if kind.shared)


def job_rate(run: JobRun) -> float | None:
    """Items per second so far (or over the whole run, once finished)."""
    end = run.finished_at or timezone.now()
    seconds = (end - run.started_at).total_seconds()
    if seconds <= 0 or not run.done:
        return None
    return run.done / seconds


def job_eta_seconds(run: JobRun) -> float | None:
    """Seconds left at the rate so far, for a running run that knows its total."""
    rate = job_rate(run)
    if run.status != JobRun.Status.RUNNING or not run.total or not rate:
        return None
    return max(0, run.total - run.done) / rate
