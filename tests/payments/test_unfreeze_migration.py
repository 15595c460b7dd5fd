"""merchants 0018: requests to lift a payout freeze are copied into the approval queue with their outcome."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.models import ApprovalRequest
from tests.factories import MerchantFactory, UserFactory

BEFORE = [("merchants", "0017_payouts_unfreeze_request")]
AFTER = [("merchants", "0018_unfreeze_through_approvals")]


@pytest.mark.django_db(transaction=True)
def test_unfreeze_requests_move_to_the_approval_queue_with_their_outcome() -> None:
    merchant = MerchantFactory(payouts_frozen=True, frozen_reason="chargebacks under review")
    asker, checker = UserFactory(), UserFactory()
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps.get_model("merchants", "UnfreezeRequest").objects
        rows = {
            "approved": {"status": "approved", "decided_by_id": checker.pk},
            "rejected": {"status": "rejected", "decided_by_id": checker.pk},
            "own": {"status": "rejected", "decided_by_id": asker.pk},  # its asker turned it down
            "withdrawn": {"status": "withdrawn"},
            "pending": {"status": "pending"},
        }
        for note, fields in rows.items():
            decided = {"decided_at": "2026-12-01T10:00:00Z"} if fields["status"] != "pending" else {}
            old.create(
                merchant_id=merchant.pk,
                frozen_reason="chargebacks under review",
                note=note if note != "pending" else "",
                requested_by_id=asker.pk,
                **fields,
                **decided,
            )
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        copied = {r.reason: r for r in ApprovalRequest.objects.filter(kind="merchants.payouts_unfreeze")}
        assert {reason: (r.status, r.checker_id) for reason, r in copied.items()} == {
            "approved": ("approved", checker.pk),
            "rejected": ("rejected", checker.pk),
            "own": ("cancelled", None),
            "withdrawn": ("cancelled", None),
            "-": ("pending", None),
        }
        for request in copied.values():
            assert request.payload == {"merchant_id": merchant.pk, "frozen_reason": "chargebacks under review"}
            assert (request.bank_id, request.maker_id) == (merchant.sponsor_bank_id, asker.pk)
            assert request.permission == "merchants.unfreeze_payouts"
        approved = copied["approved"]
        assert (approved.result_type, approved.result_id) == ("merchants.merchant", str(merchant.pk))
        assert copied["-"].expires_at > copied["-"].created_at
        granted = Group.objects.filter(permissions__codename="unfreeze_payouts").values_list("name", flat=True)
        assert set(granted) == {"Alliance operators", "Bank operators"}
    finally:
        ApprovalRequest.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
