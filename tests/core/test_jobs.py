from __future__ import annotations

import io

import pytest

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
