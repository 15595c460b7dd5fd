"""Points adjustments move to the maker-checker mechanism (core.ApprovalRequest, kind "rewards.points_adjustment").

Every adjustment request is copied there, decided ones with their outcome (posted -> approved, with the transaction as
its result), so their history stays readable in one queue; pending ones wait again for the full expiry. Deciding needs
the new permission "rewards.adjust_points", given to bank and alliance operators."""

import uuid
from datetime import timedelta

from django.db import migrations
from django.utils import timezone

from core.roles import grant_permissions

KIND = "rewards.points_adjustment"
STATUS = {"pending": "pending", "posted": "approved", "rejected": "rejected"}


def copy_requests(apps, schema_editor):
    AdjustmentRequest = apps.get_model("rewards", "AdjustmentRequest")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    for old in AdjustmentRequest.objects.order_by("id").iterator():
        new = ApprovalRequest.objects.create(
            kind=KIND,
            payload={
                "cardholder_id": old.cardholder_id,
                "program_id": old.program_id,
                "amount": old.amount,
                "key": f"adjustment:{old.pk}" if old.status == "posted" else f"adjustment:{uuid.uuid4().hex}",
            },
            reason=old.reason,
            bank_id=old.bank_id,
            permission="rewards.adjust_points",
            maker_id=old.requested_by_id,
            status=STATUS[old.status],
            checker_id=old.decided_by_id,
            decided_at=old.decided_at,
            expires_at=now + timedelta(hours=72) if old.status == "pending" else old.created_at,
            result_type="rewards.ledgertransaction" if old.transaction_id else "",
            result_id=str(old.transaction_id or ""),
        )
        ApprovalRequest.objects.filter(pk=new.pk).update(created_at=old.created_at)  # set on insert; keep its own


def grant(apps, schema_editor):
    adjust = ["rewards.adjust_points"]
    grant_permissions(apps, {"Alliance operators": adjust, "Bank operators": adjust})


class Migration(migrations.Migration):
    dependencies = [("rewards", "0019_benefit_stated_value"), ("core", "0013_approval_queue_grants_and_expiry")]

    operations = [
        migrations.AlterModelOptions(
            name="account",
            options={
                "ordering": ("id",),
                "permissions": [("adjust_points", "Can request and approve points adjustments")],
                "verbose_name": "ledger account",
                "verbose_name_plural": "ledger accounts",
            },
        ),
        migrations.RunPython(copy_requests, migrations.RunPython.noop),
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.DeleteModel(name="AdjustmentRequest"),
    ]
