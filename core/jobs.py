"""Job runs: every task and management command reports its progress through `job_run`.

    with job_run("points.expire", period="2026-11-22", total=n, echo=self.stdout) as run:
        for chunk in chunks:
            ...
            run.advance(len(chunk), expired=len(chunk))

A run is recorded as a `JobRun` row (status, progress, counts, error); a second run of the same job and period while one
is running is refused by a unique constraint, so a job started twice by beat and by hand does not run twice at once.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from django.core.management.base import OutputWrapper
from django.db import IntegrityError, transaction
from django.utils import timezone

from .errors import Conflict
from .models import JobRun
from .requestid import get_request_id

_SAVE_EVERY_SECONDS = 1.0
_REDRAW_SECONDS = {True: 0.5, False: 60.0}  # a terminal redraws the bar in place; a log, once a minute at most


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
    try:
        with transaction.atomic():
            run = JobRun.objects.create(job=job, period=period, total=total, request_id=get_request_id())
    except IntegrityError as exc:
        raise Conflict(f"Job {job} for {period or 'this period'} is already running.", code="job_running") from exc
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
        JobRun.objects.filter(pk=run.pk).update(
            status=run.status,
            finished_at=run.finished_at,
            done=run.done,
            total=run.total,
            counts=run.counts,
            error=run.error,
        )
