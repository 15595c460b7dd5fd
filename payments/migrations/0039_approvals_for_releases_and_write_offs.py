"""Payout releases, reconciliation write-offs and risk releases above the threshold move to the maker-checker mechanism
(core.ApprovalRequest, kinds "payments.payout_release", "payments.write_off" and "payments.risk_review_release").

What was waiting is copied there with the same maker and waits again for the full expiry (a risk release: at most until
its review's deadline); a write-off waiting for its second operator is open again meanwhile. Releases and write-offs
already approved are copied as approved, their maker and checker kept (a released payout is the result that lets it be
sent while its merchant is frozen; a write-off's result is its ledger posting); a risk review's decided first approvals
are in the audit log already. Requesting and approving a release needs the new permission "payments.release_payout",
given to bank and alliance operators."""

from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone

from core.roles import grant_permissions

EXPIRY = timedelta(hours=72)


def copy_payout_releases(apps, schema_editor):
    Payout = apps.get_model("payments", "Payout")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    asked = models.Q(requested_by__isnull=False) | models.Q(approved_by__isnull=False)
    for payout in Payout.objects.filter(asked).select_related("batch", "merchant").order_by("id").iterator():
        approved = payout.approved_by_id is not None
        if not approved and payout.status != "pending_approval":
            continue
        maker_id = payout.requested_by_id or payout.approved_by_id
        checker_id = payout.approved_by_id if payout.approved_by_id != maker_id else None  # a checker is never the maker
        new = ApprovalRequest.objects.create(
            kind="payments.payout_release",
            payload={
                "payout_id": payout.pk,
                "merchant_id": payout.merchant_id,
                "batch": payout.batch.public_id,
                "reference": payout.reference,
                "amount": payout.amount,
                "currency": payout.currency,
                "held": payout.batch.status == "held",
            },
            reason="-",
            bank_id=payout.merchant.sponsor_bank_id,
            permission="payments.release_payout",
            maker_id=maker_id,
            status="approved" if approved else "pending",
            checker_id=checker_id,
            decided_at=payout.created_at if approved else None,
            expires_at=payout.created_at if approved else now + EXPIRY,
            result_type="payments.payout" if approved else "",
            result_id=str(payout.pk) if approved else "",
        )
        ApprovalRequest.objects.filter(pk=new.pk).update(created_at=payout.created_at)


def copy_write_offs(apps, schema_editor):
    Exception_ = apps.get_model("payments", "ReconciliationException")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    asked = Exception_.objects.filter(write_off_requested_by__isnull=False).select_related("channel")
    for exception in asked.order_by("id").iterator():
        pending = exception.status == "write_off_requested"
        approved = exception.resolution == "write_off" and exception.write_off_transaction_id is not None
        if not pending and not approved:
            continue
        maker_id = exception.write_off_requested_by_id
        new = ApprovalRequest.objects.create(
            kind="payments.write_off",
            payload={
                "exception_id": exception.pk,
                "exception": exception.public_id,
                "reference": exception.reference or exception.channel_txn_id,
                "class": exception.kind,
                "bank_id": exception.channel.acquirer_id,
                "amount": exception.write_off_amount,
                "currency": exception.currency,
            },
            reason="-",
            bank_id=exception.channel.acquirer_id,
            permission="payments.change_reconciliationexception",
            maker_id=maker_id,
            status="pending" if pending else "approved",
            checker_id=None if pending or exception.resolved_by_id == maker_id else exception.resolved_by_id,
            decided_at=None if pending else exception.resolved_at,
            expires_at=now + EXPIRY if pending else exception.updated_at,
            result_type="" if pending else "rewards.ledgertransaction",
            result_id="" if pending else str(exception.write_off_transaction_id),
        )
        ApprovalRequest.objects.filter(pk=new.pk).update(created_at=exception.updated_at)
        if pending:
            Exception_.objects.filter(pk=exception.pk).update(status="open", write_off_amount=None)


def copy_first_risk_approvals(apps, schema_editor):
    RiskReviewApproval = apps.get_model("payments", "RiskReviewApproval")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    waiting = RiskReviewApproval.objects.filter(
        payment__risk_review=True, payment__status="requires_capture"
    ).select_related("payment")
    for first in waiting.order_by("id").iterator():
        payment = first.payment
        expires_at = now + EXPIRY
        if payment.risk_review_deadline is not None:
            expires_at = min(expires_at, payment.risk_review_deadline)
        new = ApprovalRequest.objects.create(
            kind="payments.risk_review_release",
            payload={
                "payment_id": payment.public_id,
                "merchant_id": payment.merchant_id,
                "amount": payment.amount,
                "currency": payment.currency,
            },
            reason="-",
            bank_id=payment.issuer_id,
            permission="payments.change_riskreview",
            maker_id=first.approved_by_id,
            status="pending",
            expires_at=expires_at,
        )
        ApprovalRequest.objects.filter(pk=new.pk).update(created_at=first.approved_at)


def grant(apps, schema_editor):
    permission = "payments.release_payout"
    grant_permissions(apps, {"Alliance operators": [permission], "Bank operators": [permission]})


class Migration(migrations.Migration):
    dependencies = [
        ('payments', '0038_dispute_feed'),
        ('core', '0014_jobrun_rerun_permission'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='payout',
            options={'ordering': ('-id',), 'permissions': [('release_payout', "Can request and approve a payout's release")], 'verbose_name': 'payout', 'verbose_name_plural': 'payouts'},
        ),
        migrations.RunPython(copy_payout_releases, migrations.RunPython.noop),
        migrations.RunPython(copy_write_offs, migrations.RunPython.noop),
        migrations.RunPython(copy_first_risk_approvals, migrations.RunPython.noop),
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='payout',
            name='approved_by',
        ),
        migrations.RemoveField(
            model_name='payout',
            name='requested_by',
        ),
        migrations.RemoveField(
            model_name='reconciliationexception',
            name='write_off_requested_by',
        ),
        migrations.AlterField(
            model_name='reconciliationexception',
            name='status',
            field=models.CharField(choices=[('open', 'open'), ('resolved', 'resolved'), ('superseded', 'cleared by a corrected statement')], default='open', max_length=20, verbose_name='status'),
        ),
        migrations.DeleteModel(
            name='RiskReviewApproval',
        ),
    ]
