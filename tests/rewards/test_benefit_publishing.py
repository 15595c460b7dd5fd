"""Publishing a benefit goes through the approval queue (core.approvals, kind "rewards.benefit_publish"): one operator
of the responsible bank asks, a second one (or an alliance operator) approves and the benefit is published in the
approval's transaction. The request names the draft's version: a benefit edited since is refused at approval."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from core.approvals import approval_approve, approval_describe, approval_reject, approvals_waiting_for
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest, AuditLog
from rewards import services as s
from rewards.models import Benefit
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    BankOperatorFactory,
    MemberBankFactory,
    MerchantFactory,
    StaffFactory,
    bank_operator,
    make_benefit,
)

pytestmark = pytest.mark.django_db


def _draft(**fields):
    return make_benefit(status=Benefit.Status.DRAFT, **fields)


def _ask(benefit, maker, reason="ready for the catalogue"):
    return s.benefit_request_publish(benefit_id=benefit.pk, operator=maker, reason=reason)


def test_a_second_operator_of_the_bank_approves_and_the_benefit_is_published() -> None:
    benefit = _draft()
    maker, checker = bank_operator(benefit.bank), bank_operator(benefit.bank)
    outsider = bank_operator(MemberBankFactory())
    request = _ask(benefit, maker)
    benefit.refresh_from_db()
    assert benefit.status == Benefit.Status.DRAFT  # nothing changes until approved
    assert (request.kind, request.bank_id, request.maker_id) == (s.BENEFIT_PUBLISH, benefit.bank_id, maker.pk)
    assert request.permission == "rewards.change_benefit"
    assert request.payload == {"benefit_id": benefit.pk, "version": s.benefit_version(benefit)}
    assert list(approvals_waiting_for(checker)) == [request]
    assert list(approvals_waiting_for(maker)) == []
    assert list(approvals_waiting_for(outsider)) == []
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=maker)
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=outsider)
    approved = approval_approve(request_id=request.pk, checker=checker)
    benefit.refresh_from_db()
    assert benefit.status == Benefit.Status.PUBLISHED
    assert benefit.published_at is not None
    assert (approved.status, approved.result_type, approved.result_id) == (
        "approved",
        "rewards.benefit",
        str(benefit.pk),
    )
    audit = AuditLog.objects.get(action="benefit.published")
    assert (audit.actor, audit.after) == (checker, {"status": "published", "requested_by": maker.pk})


def test_a_benefit_edited_after_the_request_is_refused_at_approval_and_stays_a_draft() -> None:
    benefit = _draft()
    maker, checker = bank_operator(benefit.bank), bank_operator(benefit.bank)
    request = _ask(benefit, maker)
    benefit.stock_total = benefit.stock_left = 5
    benefit.save()  # as the admin saves an edit
    with translation.override("en"):
        assert ("status", "draft · edited since the request") in approval_describe(request)
    with pytest.raises(Conflict) as refused:
        approval_approve(request_id=request.pk, checker=checker)
    assert refused.value.code == "benefit_changed"
    request.refresh_from_db()
    benefit.refresh_from_db()
    assert (request.status, benefit.status) == ("pending", Benefit.Status.DRAFT)
    assert not AuditLog.objects.filter(action="benefit.published").exists()
    # The checker rejects it; the maker asks again about the benefit as it is now, and that one is approved.
    approval_reject(request_id=request.pk, checker=checker, reason="edited since")
    approval_approve(request_id=_ask(benefit, maker).pk, checker=checker)
    benefit.refresh_from_db()
    assert (benefit.status, benefit.stock_total) == (Benefit.Status.PUBLISHED, 5)


def test_only_a_draft_not_already_asked_about_may_be_asked_and_nothing_is_written_otherwise() -> None:
    benefit = _draft()
    maker = bank_operator(benefit.bank)
    with pytest.raises(ValidationFailed):
        _ask(benefit, maker, reason="  ")
    assert ApprovalRequest.objects.count() == 0
    auditor = BankOperatorFactory(bank=benefit.bank, role="auditor").user
    with pytest.raises(PermissionDenied):
        _ask(benefit, auditor)
    with pytest.raises(PermissionDenied):
        _ask(benefit, bank_operator(MemberBankFactory()))
    assert ApprovalRequest.objects.count() == 0
    _ask(benefit, maker)
    with pytest.raises(Conflict) as twice:
        _ask(benefit, bank_operator(benefit.bank))
    assert twice.value.code == "benefit_publish_pending"
    with pytest.raises(Conflict) as published:
        _ask(make_benefit(bank=benefit.bank), maker)
    assert published.value.code == "benefit_state"
    assert ApprovalRequest.objects.count() == 1


def test_a_benefit_withdrawn_or_published_meanwhile_is_refused_at_approval() -> None:
    benefit = _draft()
    maker, checker = bank_operator(benefit.bank), bank_operator(benefit.bank)
    request = _ask(benefit, maker)
    Benefit.objects.filter(pk=benefit.pk).update(status=Benefit.Status.WITHDRAWN)
    with pytest.raises(Conflict) as refused:
        approval_approve(request_id=request.pk, checker=checker)
    assert refused.value.code == "benefit_state"
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_a_merchants_benefit_is_checked_by_its_sponsor_bank_or_the_alliance() -> None:
    merchant = MerchantFactory()
    benefit = _draft(bank=merchant.sponsor_bank, funding_merchant=merchant)
    request = _ask(benefit, bank_operator(merchant.sponsor_bank))
    assert request.bank_id == merchant.sponsor_bank_id
    alliance = AllianceOperatorFactory()
    assert list(approvals_waiting_for(alliance)) == [request]
    approval_approve(request_id=request.pk, checker=alliance)
    assert Benefit.objects.get(pk=benefit.pk).status == Benefit.Status.PUBLISHED


def _client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_admin_asks_from_the_benefits_page_and_shows_the_request() -> None:
    benefit = _draft()
    maker = bank_operator(benefit.bank)
    client = _client(maker)
    change = reverse("admin:rewards_benefit_change", args=[benefit.pk])
    ask = reverse("admin:rewards_benefit_request_publish", args=[benefit.pk])
    assert ask in client.get(change).content.decode()
    response = client.post(ask, {"reason": ""})
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    response = client.post(ask, {"reason": "terms checked"})
    request = ApprovalRequest.objects.get(kind=s.BENEFIT_PUBLISH)
    assert response.url == reverse("admin:core_approvalrequest_change", args=[request.pk])
    page = client.get(change).content.decode()
    assert reverse("admin:core_approvalrequest_change", args=[request.pk]) in page
    assert ask not in page
    # No action publishes directly any more: only withdrawing is left.
    actions = client.get(reverse("admin:rewards_benefit_changelist")).context["action_form"].fields["action"]
    assert [name for name, _label in actions.choices if name] == ["withdraw"]
    # Another bank's operator, or staff without the role, cannot ask.
    assert _client(bank_operator(MemberBankFactory())).get(ask).status_code == 404
    assert _client(StaffFactory()).get(ask).status_code == 403


def test_the_queue_describes_the_request() -> None:
    benefit = _draft(stock_total=10, valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    request = _ask(benefit, bank_operator(benefit.bank))
    with translation.override("en"):
        rows = dict(approval_describe(request))
    assert rows["benefit"] == f"#{benefit.pk} {benefit}"
    assert rows["responsible bank"] == str(benefit.bank)
    assert rows["price"] == f"1,000 {benefit.price_program.unit_code}"
    assert rows["stock"] == "10"
    assert rows["status"] == "draft"


BEFORE = [("rewards", "0020_adjustments_through_approvals")]
AFTER = [("rewards", "0021_benefit_publishing_through_approvals")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_pending_requests_and_published_history_over() -> None:
    bank = MemberBankFactory()
    asker, approver = StaffFactory(), StaffFactory()
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps.get_model("rewards", "Benefit").objects
        now = timezone.now()
        common = {
            "bank_id": bank.pk,
            "kind": "gift",
            "title_zh": "测试",
            "pricing": "free",
            "valid_from": now,
            "valid_until": now + dt.timedelta(days=30),
        }
        pending = old.create(**common, title_en="pending", status="pending", requested_by_id=asker.pk)
        published = old.create(
            **common,
            title_en="published",
            status="published",
            requested_by_id=asker.pk,
            approved_by_id=approver.pk,
            published_at=now - dt.timedelta(days=2),
        )
        draft = old.create(**common, title_en="draft", status="draft")
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        statuses = dict(Benefit.objects.values_list("title_en", "status"))
        assert statuses == {"pending": "draft", "published": "published", "draft": "draft"}
        copied = {r.payload["benefit_id"]: r for r in ApprovalRequest.objects.filter(kind=s.BENEFIT_PUBLISH)}
        assert set(copied) == {pending.pk, published.pk}
        waiting = copied[pending.pk]
        assert (waiting.status, waiting.maker_id, waiting.bank_id) == ("pending", asker.pk, bank.pk)
        assert waiting.permission == "rewards.change_benefit"
        assert waiting.payload["version"] == s.benefit_version(Benefit.objects.get(pk=pending.pk))
        assert waiting.expires_at > timezone.now()
        history = copied[published.pk]
        assert (history.status, history.maker_id, history.checker_id) == ("approved", asker.pk, approver.pk)
        assert (history.result_type, history.result_id) == ("rewards.benefit", str(published.pk))
        assert history.decided_at == published.published_at
        # The carried-over request is approved by a second operator of the bank as any other. (A transactional test
        # before this one may have flushed the operator groups: the permission is given to the user itself.)
        checker = BankOperatorFactory(bank=bank).user
        change = Permission.objects.get(content_type__app_label="rewards", codename="change_benefit")
        checker.user_permissions.add(change)
        approval_approve(request_id=waiting.pk, checker=checker)
        assert Benefit.objects.get(pk=pending.pk).status == "published"
        assert Benefit.objects.get(pk=draft.pk).status == "draft"
    finally:
        ApprovalRequest.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
