"""merchants 0018 and 0019: requests to lift a payout freeze and settlement account changes are copied into the
approval queue with their outcome; payments 0039: payout releases, write-offs and first risk approvals too."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.models import ApprovalRequest
from tests.factories import FACTORIES, MerchantFactory, UserFactory, make_payout, make_settlement_batch

BEFORE = [("merchants", "0017_payouts_unfreeze_request")]
AFTER = [("merchants", "0018_unfreeze_through_approvals")]
ACCOUNTS_BEFORE = [("merchants", "0018_unfreeze_through_approvals")]
ACCOUNTS_AFTER = [("merchants", "0019_account_changes_through_approvals")]
PAYMENTS_BEFORE = [("payments", "0038_dispute_feed")]
PAYMENTS_AFTER = [("payments", "0039_approvals_for_releases_and_write_offs")]


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


@pytest.mark.django_db(transaction=True)
def test_settlement_account_changes_move_to_the_approval_queue_with_their_outcome() -> None:
    account = FACTORIES["merchants.settlementaccount"]()
    merchant = account.merchant
    asker, checker = UserFactory(), UserFactory()
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(ACCOUNTS_BEFORE)
        old = executor.loader.project_state(ACCOUNTS_BEFORE).apps.get_model("merchants", "SettlementAccountChange")
        for last4, status, decided_by in (
            ("1111", "approved", checker),
            ("2222", "rejected", checker),
            ("3333", "pending", None),
        ):
            old.objects.create(
                merchant_id=merchant.pk,
                account_name=merchant.legal_name,
                bank_name="B",
                account_encrypted=f"cipher-{last4}",
                account_last4=last4,
                status=status,
                requested_by_id=asker.pk,
                decided_by_id=decided_by.pk if decided_by else None,
                decided_at="2026-12-01T10:00:00Z" if decided_by else None,
            )
        executor = MigrationExecutor(connection)
        executor.migrate(ACCOUNTS_AFTER)
        copied = {
            r.payload["account_last4"]: r
            for r in ApprovalRequest.objects.filter(kind="merchants.settlement_account_change")
        }
        assert {last4: (r.status, r.checker_id) for last4, r in copied.items()} == {
            "1111": ("approved", checker.pk),
            "2222": ("rejected", checker.pk),
            "3333": ("pending", None),
        }
        assert copied["3333"].payload["account_encrypted"] == "cipher-3333"
        assert (copied["3333"].bank_id, copied["3333"].maker_id) == (merchant.sponsor_bank_id, asker.pk)
        assert (copied["1111"].result_type, copied["1111"].result_id) == (
            "merchants.settlementaccount",
            str(account.pk),
        )
        granted = Group.objects.filter(permissions__codename="change_account").values_list("name", flat=True)
        assert set(granted) == {"Alliance operators", "Bank operators"}
    finally:
        ApprovalRequest.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_payout_releases_write_offs_and_first_risk_approvals_move_to_the_approval_queue() -> None:
    from django.utils import timezone

    from payments.models import PaymentIntent, Payout, ReconciliationException

    asker, checker = UserFactory(), UserFactory()
    waiting = make_payout(make_settlement_batch(net=9_000_000), status="pending_approval")
    released = make_payout(make_settlement_batch(net=8_000_000), status="ready")
    untouched = make_payout(make_settlement_batch(net=7_000_000), status="pending_approval")
    asked = FACTORIES["payments.reconciliationexception"]()
    written = FACTORIES["payments.reconciliationexception"]()
    txn = FACTORIES["rewards.ledgertransaction"]()
    held = FACTORIES["payments.paymentintent"]()
    deadline = timezone.now() + timedelta(hours=2)
    PaymentIntent.objects.filter(pk=held.pk).update(
        risk_review=True, status="requires_capture", risk_review_deadline=deadline
    )
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(PAYMENTS_BEFORE)
        old = executor.loader.project_state(PAYMENTS_BEFORE).apps
        old.get_model("payments", "Payout").objects.filter(pk=waiting.pk).update(requested_by_id=asker.pk)
        old.get_model("payments", "Payout").objects.filter(pk=released.pk).update(
            requested_by_id=asker.pk, approved_by_id=checker.pk
        )
        exceptions = old.get_model("payments", "ReconciliationException").objects
        exceptions.filter(pk=asked.pk).update(
            status="write_off_requested", write_off_amount=100, write_off_requested_by_id=asker.pk
        )
        exceptions.filter(pk=written.pk).update(
            status="resolved", resolution="write_off", write_off_amount=100, write_off_requested_by_id=asker.pk,
            write_off_transaction_id=txn.pk, resolved_by_id=checker.pk, resolved_at=timezone.now(),
        )  # fmt: skip
        old.get_model("payments", "RiskReviewApproval").objects.create(payment_id=held.pk, approved_by_id=asker.pk)
        executor = MigrationExecutor(connection)
        executor.migrate(PAYMENTS_AFTER)

        releases = {r.payload["payout_id"]: r for r in ApprovalRequest.objects.filter(kind="payments.payout_release")}
        assert set(releases) == {waiting.pk, released.pk}  # a payout nobody asked about stays as it is
        assert (releases[waiting.pk].status, releases[waiting.pk].maker_id) == ("pending", asker.pk)
        assert releases[waiting.pk].expires_at > timezone.now()
        done = releases[released.pk]
        assert (done.status, done.maker_id, done.checker_id) == ("approved", asker.pk, checker.pk)
        assert (done.result_type, done.result_id) == ("payments.payout", str(released.pk))
        assert done.bank_id == released.merchant.sponsor_bank_id
        assert Payout.objects.get(pk=untouched.pk).status == "pending_approval"

        write_offs = {r.payload["exception_id"]: r for r in ApprovalRequest.objects.filter(kind="payments.write_off")}
        assert (write_offs[asked.pk].status, write_offs[asked.pk].maker_id) == ("pending", asker.pk)
        assert write_offs[asked.pk].payload["amount"] == 100
        assert write_offs[asked.pk].bank_id == asked.channel.acquirer_id
        # open while the request waits (read by its column: the table has not its later columns at this migration)
        assert ReconciliationException.objects.filter(pk=asked.pk).values_list("status", flat=True).get() == "open"
        approved = write_offs[written.pk]
        assert (approved.status, approved.maker_id, approved.checker_id) == ("approved", asker.pk, checker.pk)
        assert (approved.result_type, approved.result_id) == ("rewards.ledgertransaction", str(txn.pk))

        risk = ApprovalRequest.objects.get(kind="payments.risk_review_release")
        assert (risk.status, risk.maker_id, risk.payload["payment_id"]) == ("pending", asker.pk, held.public_id)
        assert (risk.bank_id, risk.expires_at) == (held.issuer_id, deadline)  # it expires with the review
        granted = Group.objects.filter(permissions__codename="release_payout").values_list("name", flat=True)
        assert set(granted) == {"Alliance operators", "Bank operators"}
    finally:
        ApprovalRequest.objects.all().delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
