"""alliance 0009: revenue-share terms submitted under the old four-eyes fields are copied into the approval queue with
their outcome, and a waiting one can be approved there."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from alliance.models import MembershipFee, RevenueSharePolicy
from core.approvals import approval_approve
from core.models import ApprovalRequest
from core.scoping import ALLIANCE_OPERATORS
from tests.factories import MemberBankFactory, UserFactory

BEFORE = [("alliance", "0009_clearing_exchange_reversal")]
AFTER = [("alliance", "0010_terms_through_approvals")]
WEIGHTS = {"weight_issuer_volume": 1, "cost_weight_issuer_volume": 1}


@pytest.mark.django_db(transaction=True)
def test_submitted_terms_move_to_the_approval_queue_with_their_outcome() -> None:
    maker, checker = UserFactory(is_staff=True), UserFactory(is_staff=True)  # alliance operators once migrated
    bank = MemberBankFactory()
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        Policy, Fee = old.get_model("alliance", "RevenueSharePolicy"), old.get_model("alliance", "MembershipFee")
        decided = {"proposed_by_id": maker.pk, "decided_by_id": checker.pk, "decided_at": "2026-11-02T10:00:00Z"}
        start = dt.date(2026, 11, 1)
        policies = {
            "approved": Policy.objects.create(version=1, effective_from=start, status="approved", **decided, **WEIGHTS),
            "rejected": Policy.objects.create(
                version=2, effective_from=start, status="rejected", decision_note="too soon", **decided, **WEIGHTS
            ),
            "pending": Policy.objects.create(
                version=3, effective_from=start, status="pending", reason="more on volume", proposed_by_id=maker.pk,
                **WEIGHTS,
            ),
            "draft": Policy.objects.create(version=4, effective_from=start, status="draft", **WEIGHTS),
            "seeded": Policy.objects.create(version=5, effective_from=start, status="approved", **WEIGHTS),
        }  # fmt: skip
        fee = Fee.objects.create(bank_id=bank.pk, amount=80_000, effective_from=start, status="pending",
                                 proposed_by_id=maker.pk, reason="yearly fee")  # fmt: skip

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        requests = ApprovalRequest.objects.filter(kind="alliance.revenue_share_terms")
        by_version = {r.payload["version_id"]: r for r in requests if r.payload["model"] == "revenuesharepolicy"}
        assert {pk: (r.status, r.maker_id, r.checker_id) for pk, r in by_version.items()} == {
            policies["approved"].pk: ("approved", maker.pk, checker.pk),
            policies["rejected"].pk: ("rejected", maker.pk, checker.pk),
            policies["pending"].pk: ("pending", maker.pk, None),
        }
        approved = by_version[policies["approved"].pk]
        assert (approved.result_type, approved.result_id) == (
            "alliance.revenuesharepolicy",
            str(policies["approved"].pk),
        )
        assert by_version[policies["rejected"].pk].decision_reason == "too soon"
        waiting = by_version[policies["pending"].pk]
        assert (waiting.reason, waiting.bank_id, waiting.permission) == (
            "more on volume",
            None,
            "alliance.approve_terms",
        )
        assert waiting.payload["terms"]["weights"]["issuer_volume"] == "1.0000"
        statuses = dict(RevenueSharePolicy.objects.values_list("version", "status"))
        assert statuses == {1: "approved", 2: "draft", 3: "draft", 4: "draft", 5: "approved"}
        granted = Group.objects.filter(permissions__codename="approve_terms").values_list("name", flat=True)
        assert set(granted) == {"Alliance operators"}

        # What waited is decided in the queue: approved, it is in force.
        checker.groups.add(Group.objects.get(name=ALLIANCE_OPERATORS))
        checker = type(checker).objects.get(pk=checker.pk)
        approval_approve(request_id=waiting.pk, checker=checker)
        assert RevenueSharePolicy.objects.get(version=3).status == "approved"
        fee_request = requests.get(payload__model="membershipfee")
        assert (fee_request.status, fee_request.maker_id) == ("pending", maker.pk)
        approval_approve(request_id=fee_request.pk, checker=checker)
        assert MembershipFee.objects.get(pk=fee.pk).status == "approved"
    finally:
        ApprovalRequest.objects.all().delete()
        RevenueSharePolicy.objects.all().delete()
        MembershipFee.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
