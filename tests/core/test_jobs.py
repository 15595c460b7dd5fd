from __future__ import annotations

import io

import pytest
from django.db.models import Count

from core.errors import Conflict
from core.jobs import job_run
from core.models import JobRun

pytestmark = pytest.mark.django_db


def test_successful_run_records_progress_and_counts() -> None:
    out = io.StringIO()
    with job_run("test.job", period="2026-11-22", total=10, echo=out) as run:
        for _ in range(10):
            run.advance(1, processed=1)
        run.count(skipped=2)
    record = JobRun.objects.get(job="test.job")
    assert record.status == JobRun.Status.SUCCEEDED
    assert (record.done, record.total, record.counts) == (10, 10, {"processed": 10, "skipped": 2})
    assert record.finished_at is not None
    assert record.progress_percent == 100
    assert "10/10" in out.getvalue()


def test_failed_run_records_the_error_and_reraises() -> None:
    with pytest.raises(RuntimeError, match="boom"), job_run("test.fail", period="p"):
        raise RuntimeError("boom")
    record = JobRun.objects.get(job="test.fail")
    assert record.status == JobRun.Status.FAILED
    assert "RuntimeError: boom" in record.error


def test_same_job_and_period_cannot_run_twice_at_once() -> None:
    with job_run("test.once", period="2026-11-22"):
        with pytest.raises(Conflict, match="already running"), job_run("test.once", period="2026-11-22"):
            pass
        with job_run("test.once", period="2026-11-23"):
            pass
    with job_run("test.once", period="2026-11-22"):
        pass
    assert JobRun.objects.filter(job="test.once", status="succeeded").count() == 3


def test_a_bar_on_a_commands_output_redraws_on_one_line() -> None:
    from django.core.management.base import OutputWrapper

    out = io.StringIO()
    with job_run("test.bar", period="2026-11-22", total=3, echo=OutputWrapper(out)) as run:
        for _ in range(3):
            run.advance(1)
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().rstrip("\n").split("\r")[-1].startswith("test.bar: 100%")


def test_a_run_whose_process_died_is_taken_over() -> None:
    """A run killed outright stays "running" with no one holding its lock: the next run marks it abandoned."""
    from core.jobs import ABANDONED, job_run_alive

    dead = JobRun.objects.create(job="test.killed", period="2026-11-22")
    assert not job_run_alive("test.killed", "2026-11-22")
    with job_run("test.killed", period="2026-11-22") as run:
        assert job_run_alive("test.killed", "2026-11-22")
        run.advance(1)
    dead.refresh_from_db()
    assert (dead.status, dead.error) == (JobRun.Status.FAILED, ABANDONED)
    assert dead.finished_at is not None
    assert JobRun.objects.get(job="test.killed", status="succeeded").done == 1
    assert not job_run_alive("test.killed", "2026-11-22")


def test_a_live_run_in_another_process_is_never_taken_over() -> None:
    """Another session holding the run's lock is alive however long it takes: the new run is refused."""
    import threading

    from django.db import connection

    from core import jobs

    holding, release = threading.Event(), threading.Event()

    def other_process() -> None:
        key = jobs._lock_key("test.slow", "p")
        try:
            assert jobs._try_lock(key)
            holding.set()
            release.wait(timeout=30)
            jobs._unlock(key)  # it finishes (a killed one's session ends, which frees the lock as well)
        finally:
            connection.close()

    thread = threading.Thread(target=other_process)
    thread.start()
    assert holding.wait(timeout=30)
    try:
        JobRun.objects.create(job="test.slow", period="p")  # its row, as old as you like
        assert jobs.job_run_alive("test.slow", "p")
        with pytest.raises(Conflict, match="already running"), job_run("test.slow", period="p"):
            pass
        assert JobRun.objects.get(job="test.slow").status == JobRun.Status.RUNNING
    finally:
        release.set()
        thread.join(timeout=30)
    with job_run("test.slow", period="p"):
        pass
    assert dict(JobRun.objects.filter(job="test.slow").values_list("status").annotate(n=Count("id"))) == {
        "failed": 1,
        "succeeded": 1,
    }
