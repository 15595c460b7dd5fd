"""Job runs in the admin: which runs a bank operator watches, the progress, rate and time left of a running one, and a
re-run through the job's own entry point by those allowed, audited."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.jobs import job_eta_seconds, job_rate, register_job
from core.models import AuditLog, JobRun
from tests.factories import PASSWORD, AllianceOperatorFactory, MemberBankFactory, bank_operator

pytestmark = pytest.mark.django_db
LIST = "/admin/core/jobrun/"


def _login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _run(job: str, **fields: Any) -> JobRun:
    run = JobRun.objects.create(job=job, period=fields.pop("period", "p"), **fields)
    if "started_at" in fields:
        JobRun.objects.filter(pk=run.pk).update(started_at=fields["started_at"])
        run.refresh_from_db()
    return run


def test_bank_operators_watch_the_jobs_that_touch_every_bank_and_only_those() -> None:
    shared = _run("settlement.t1", status=JobRun.Status.SUCCEEDED)
    housekeeping = _run("core.idempotency_prune", status=JobRun.Status.SUCCEEDED)
    operator = _login(bank_operator(MemberBankFactory()))
    response = operator.get(LIST)
    assert response.status_code == 200
    assert set(response.context["cl"].queryset) == {shared}
    assert operator.get(reverse("admin:core_jobrun_change", args=[housekeeping.pk])).status_code == 404
    alliance = _login(AllianceOperatorFactory()).get(LIST)
    assert set(alliance.context["cl"].queryset) == {shared, housekeeping}


def test_a_running_job_shows_its_progress_rate_and_time_left_and_reloads() -> None:
    started = timezone.now() - datetime.timedelta(seconds=100)
    run = _run("rewards.lots_expire", total=1_000, done=250, started_at=started)
    assert job_rate(run) == pytest.approx(2.5, rel=0.05)
    assert job_eta_seconds(run) == pytest.approx(300, rel=0.05)
    client = _login(bank_operator(MemberBankFactory()))
    page = client.get(LIST).content.decode()
    assert '<progress max="100" value="25">' in page
    assert "250 / 1,000" in page
    assert "0:05:0" in page or "0:04:5" in page  # about five minutes left
    detail = client.get(reverse("admin:core_jobrun_change", args=[run.pk])).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in detail

    JobRun.objects.filter(pk=run.pk).update(status=JobRun.Status.FAILED, error="ValueError: the file is truncated")
    detail = client.get(reverse("admin:core_jobrun_change", args=[run.pk])).content.decode()
    assert "ValueError: the file is truncated" in detail
    assert 'http-equiv="refresh"' not in detail


def _request(user: Any) -> Any:
    from django.test import RequestFactory

    request = RequestFactory().get(LIST)
    request.user = user
    return request


def test_rerun_calls_the_jobs_entry_point_for_those_allowed_and_is_audited() -> None:
    register_job("core.idempotency_prune", shared=False, task="core.idempotency_prune")
    failed = _run("core.idempotency_prune", status=JobRun.Status.FAILED, error="boom", period="old")
    data = {"action": "rerun", "_selected_action": [failed.pk]}

    bank_user = bank_operator(MemberBankFactory())
    shared_failed = _run("rewards.lots_expire", status=JobRun.Status.FAILED, period="old")
    bank_client = _login(bank_user)
    assert "rerun" not in dict(bank_client.get(LIST).context["cl"].model_admin.get_action_choices(_request(bank_user)))
    bank_client.post(LIST, {"action": "rerun", "_selected_action": [shared_failed.pk]})
    assert JobRun.objects.filter(job="rewards.lots_expire").count() == 1  # no permission: nothing ran

    alliance_user = AllianceOperatorFactory()
    response = _login(alliance_user).post(LIST, data, follow=True)
    assert response.status_code == 200
    again = JobRun.objects.filter(job="core.idempotency_prune").exclude(pk=failed.pk).get()
    assert again.status == JobRun.Status.SUCCEEDED
    audit = AuditLog.objects.get(action="job.rerun")
    assert audit.actor_label == alliance_user.username
    assert audit.object_id == str(failed.pk)

    bank_user.user_permissions.add(Permission.objects.get(codename="rerun_jobrun"))
    allowed = _login(bank_user)
    allowed.post(LIST, {"action": "rerun", "_selected_action": [shared_failed.pk]})
    assert JobRun.objects.filter(job="rewards.lots_expire").count() == 2
