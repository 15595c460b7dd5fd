"""The maker-checker mechanism (core.approvals): who may check, expiry, rollback of a failed apply, the race between two
checkers, and the admin queue. Two kinds are registered for these tests alone; each applies by writing a calendar day,
so what an approval applied (or did not) can be counted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core import approvals
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest, AuditLog, CalendarDay
from core.scoping import BANK_AUDITORS
from tests.concurrency import run_parallel
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    BankOperatorFactory,
    MemberBankFactory,
    StaffFactory,
    bank_operator,
)

BANK_KIND = "tests.bank_day"  # a bank's operators check it; alliance operators may not
ROLE_KIND = "tests.alliance_day"  # needs a permission bank operators lack; alliance operators may check it


def _validate(payload: dict[str, Any]) -> dict[str, Any]:
    if not payload.get("date"):
        raise ValidationFailed("A day is needed.", param="date")
    return {"date": str(payload["date"]), "bank_id": payload.get("bank_id"), "fail": bool(payload.get("fail"))}


def _apply(payload: dict[str, Any], maker: Any, checker: Any) -> CalendarDay:
    day = CalendarDay.objects.create(date=payload["date"], kind="holiday", name=f"by {checker.pk} for {maker.pk}")
    if payload["fail"]:
        raise ValidationFailed("The feature refused it.", code="refused_late")
    return day


def _describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [("day", payload["date"])]


for code, permission, alliance in ((BANK_KIND, "core.view_auditlog", False), (ROLE_KIND, "core.add_calendarday", True)):
    approvals.approval_kind_register(
        approvals.ApprovalKind(
            code=code,
            label=code,
            permission=permission,
            validate=_validate,
            bank_of=lambda payload: payload["bank_id"],
            apply=_apply,
            describe=_describe,
            alliance_may_check=alliance,
        )
    )


def _request(bank: Any, kind: str = BANK_KIND, maker: Any = None, **payload: Any) -> ApprovalRequest:
    return approvals.approval_request(
        kind=kind,
        payload={"date": "2031-01-02", "bank_id": bank.pk if bank else None, **payload},
        reason="a holiday was missed",
        maker=maker or bank_operator(bank),
    )


def _auditor(bank: Any) -> Any:
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=BANK_AUDITORS))
    BankOperatorFactory(user=user, bank=bank, role="auditor")
    return user


def _applied() -> int:
    """How many days the test kinds applied (the calendar holds the real holidays too)."""
    return CalendarDay.objects.filter(name__startswith="by ").count()


def _actions(request: ApprovalRequest) -> list[str]:
    rows = AuditLog.objects.filter(object_type="core.approvalrequest", object_id=str(request.pk)).order_by("id")
    return list(rows.values_list("action", flat=True))


@pytest.mark.django_db
def test_a_request_changes_nothing_until_a_second_operator_of_the_bank_approves() -> None:
    bank = MemberBankFactory()
    maker, checker = bank_operator(bank), bank_operator(bank)
    request = _request(bank, maker=maker)
    assert (request.status, request.bank_id, request.permission) == ("pending", bank.pk, "core.view_auditlog")
    assert abs(request.expires_at - request.created_at - timedelta(hours=72)) < timedelta(seconds=5)
    assert _applied() == 0
    with pytest.raises(PermissionDenied):
        approvals.approval_approve(request_id=request.pk, checker=maker)
    assert list(approvals.approvals_waiting_for(maker)) == []
    assert list(approvals.approvals_made_by(maker)) == [request]
    assert list(approvals.approvals_waiting_for(checker)) == [request]
    approved = approvals.approval_approve(request_id=request.pk, checker=checker)
    day = CalendarDay.objects.get(name__startswith="by ")
    assert (approved.status, approved.checker, approved.result_type, approved.result_id) == (
        "approved",
        checker,
        "core.calendarday",
        str(day.pk),
    )
    assert day.name == f"by {checker.pk} for {maker.pk}"
    assert _actions(request) == ["approval.request", "approval.approve"]
    assert list(approvals.approvals_waiting_for(checker)) == []
    with pytest.raises(Conflict):
        approvals.approval_approve(request_id=request.pk, checker=bank_operator(bank))
    assert _applied() == 1


@pytest.mark.django_db
def test_an_operator_of_another_bank_or_an_auditor_may_not_check() -> None:
    bank, other = MemberBankFactory(), MemberBankFactory()
    request = _request(bank)
    for outsider in (bank_operator(other), _auditor(bank), AllianceOperatorFactory()):
        with pytest.raises(PermissionDenied):
            approvals.approval_approve(request_id=request.pk, checker=outsider)
        with pytest.raises(PermissionDenied):
            approvals.approval_reject(request_id=request.pk, checker=outsider, reason="no")
        assert list(approvals.approvals_waiting_for(outsider)) == []
    request.refresh_from_db()
    assert (request.status, _applied(), _actions(request)) == ("pending", 0, ["approval.request"])


@pytest.mark.django_db
def test_the_kinds_permission_is_needed_and_a_request_without_a_bank_is_the_alliances() -> None:
    bank = MemberBankFactory()
    request = _request(bank, kind=ROLE_KIND)
    with pytest.raises(PermissionDenied) as refused:
        approvals.approval_approve(request_id=request.pk, checker=bank_operator(bank))  # lacks core.add_calendarday
    assert refused.value.message == approvals.checker_refusal(request, bank_operator(bank))
    alliance = AllianceOperatorFactory()
    assert list(approvals.approvals_waiting_for(alliance)) == [request]
    approvals.approval_approve(request_id=request.pk, checker=alliance)
    alliance_wide = _request(None, kind=BANK_KIND, maker=AllianceOperatorFactory(), date="2031-01-03")
    assert alliance_wide.bank_id is None
    with pytest.raises(PermissionDenied):
        approvals.approval_approve(request_id=alliance_wide.pk, checker=bank_operator(bank))
    approvals.approval_approve(request_id=alliance_wide.pk, checker=alliance)
    assert _applied() == 2


@pytest.mark.django_db
def test_a_failure_to_apply_rolls_the_approval_back_and_reports_the_error() -> None:
    bank = MemberBankFactory()
    request = _request(bank, fail=True)
    with pytest.raises(ValidationFailed) as failed:
        approvals.approval_approve(request_id=request.pk, checker=bank_operator(bank))
    assert failed.value.code == "refused_late"
    request.refresh_from_db()
    assert (request.status, request.checker_id, request.decided_at, request.result_id) == ("pending", None, None, "")
    assert _applied() == 0  # what apply wrote before failing is gone too
    assert _actions(request) == ["approval.request"]


@pytest.mark.django_db
def test_bad_input_is_refused_and_nothing_is_written() -> None:
    bank = MemberBankFactory()
    with pytest.raises(ValidationFailed):
        _request(bank, date="")
    with pytest.raises(ValidationFailed):
        approvals.approval_request(kind=BANK_KIND, payload={"date": "2031-01-02"}, reason=" ", maker=StaffFactory())
    with pytest.raises(NotFound):
        approvals.approval_request(kind="no.such", payload={}, reason="x", maker=StaffFactory())
    assert ApprovalRequest.objects.count() == 0
    assert AuditLog.objects.filter(object_type="core.approvalrequest").count() == 0


@pytest.mark.django_db
def test_reject_needs_a_reason_and_only_the_maker_may_cancel() -> None:
    bank = MemberBankFactory()
    maker, checker = bank_operator(bank), bank_operator(bank)
    request = _request(bank, maker=maker)
    with pytest.raises(ValidationFailed):
        approvals.approval_reject(request_id=request.pk, checker=checker, reason="  ")
    rejected = approvals.approval_reject(request_id=request.pk, checker=checker, reason="not a holiday")
    assert (rejected.status, rejected.checker, rejected.decision_reason) == ("rejected", checker, "not a holiday")
    other = _request(bank, maker=maker)
    with pytest.raises(PermissionDenied):
        approvals.approval_cancel(request_id=other.pk, maker=checker)
    assert approvals.approval_cancel(request_id=other.pk, maker=maker).status == "cancelled"
    with pytest.raises(Conflict):
        approvals.approval_approve(request_id=other.pk, checker=checker)
    assert _applied() == 0
    assert _actions(request)[-1] == "approval.reject"
    assert _actions(other)[-1] == "approval.cancel"


@pytest.mark.django_db
def test_the_expiry_job_expires_stale_requests_once_and_they_can_no_longer_be_approved() -> None:
    from core.tasks import approvals_expire_stale

    bank = MemberBankFactory()
    stale, fresh = _request(bank), _request(bank, date="2031-01-05")
    ApprovalRequest.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    checker = bank_operator(bank)
    assert list(approvals.approvals_waiting_for(checker)) == [fresh]  # a stale request waits for nobody
    with pytest.raises(Conflict) as late:
        approvals.approval_approve(request_id=stale.pk, checker=checker)
    assert late.value.code == "approval_expired"
    assert approvals_expire_stale() == 1
    assert approvals_expire_stale() == 0
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == ("expired", "pending")
    assert _actions(stale) == ["approval.request", "approval.expire"]
    assert AuditLog.objects.get(action="approval.expire").actor_label == "system"
    with pytest.raises(Conflict):
        approvals.approval_approve(request_id=stale.pk, checker=checker)
    assert _applied() == 0


@pytest.mark.django_db(transaction=True)
def test_two_checkers_at_once_one_wins() -> None:
    # A transactional test starts from a flushed database (no operator groups): alliance-wide superusers check.
    bank = MemberBankFactory()
    request = _request(bank, kind=ROLE_KIND, maker=StaffFactory())
    checkers = [StaffFactory(is_superuser=True), StaffFactory(is_superuser=True)]
    results = run_parallel(2, lambda i: approvals.approval_approve(request_id=request.pk, checker=checkers[i]))
    winners = [r for r in results if isinstance(r, ApprovalRequest)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert (len(winners), len(losers)) == (1, 1)
    assert _applied() == 1
    request.refresh_from_db()
    assert request.checker_id == winners[0].checker_id
    assert _actions(request) == ["approval.request", "approval.approve"]


@pytest.mark.django_db
def test_the_admin_queue_waits_for_me_shows_mine_and_decides_without_javascript() -> None:
    bank, other = MemberBankFactory(), MemberBankFactory()
    maker, checker = bank_operator(bank), bank_operator(bank)
    mine = _request(bank, maker=maker)
    _request(other)  # another bank's: in nobody's queue here
    client = Client()
    assert client.login(username=checker.username, password=PASSWORD)
    changelist = reverse("admin:core_approvalrequest_changelist")
    waiting = client.get(changelist, {"queue": "waiting"})
    assert [row.pk for row in waiting.context["cl"].result_list] == [mine.pk]
    assert waiting.context["waiting_count"] == 1
    assert [row.pk for row in client.get(changelist).context["cl"].result_list] == [mine.pk]  # scoped to the bank
    assert list(client.get(changelist, {"queue": "mine"}).context["cl"].result_list) == []
    page = reverse("admin:core_approvalrequest_change", args=[mine.pk])
    shown = client.get(page)
    assert shown.context["may_decide"] is True
    assert ("day", "2031-01-02") in shown.context["rows"]
    refused = client.post(page, {"decision": "reject", "reason": ""})
    assert refused.status_code == 200
    assert refused.context["form"].errors["reason"]
    assert client.post(page, {"decision": "reject", "reason": "wrong day"}).status_code == 302
    mine.refresh_from_db()
    assert (mine.status, mine.decision_reason) == ("rejected", "wrong day")
    outsider = Client()
    assert outsider.login(username=bank_operator(other).username, password=PASSWORD)
    assert outsider.get(page).status_code == 404


def test_expiry_hours_come_from_the_setting_by_kind(settings: Any) -> None:
    settings.APPROVAL_EXPIRY_HOURS = {"default": 72, BANK_KIND: 4}
    assert (approvals.expiry_hours(BANK_KIND), approvals.expiry_hours(ROLE_KIND)) == (4, 72)
