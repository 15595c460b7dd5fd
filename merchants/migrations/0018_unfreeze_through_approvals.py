"""Requests to lift a payout freeze move to the maker-checker mechanism (core.ApprovalRequest, kind
"merchants.payouts_unfreeze").

Every unfreeze request is copied there with its outcome, so its history stays readable in one queue: approved ->
approved (the merchant as its result), rejected -> rejected (one its own asker turned down -> cancelled, as a checker
is never the maker), withdrawn by a new freeze -> cancelled; pending ones wait again for the full expiry. Asking and
deciding need the new permission "merchants.unfreeze_payouts", given to bank and alliance operators."""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone

from core.roles import grant_permissions

KIND = "merchants.payouts_unfreeze"
PERMISSION = "merchants.unfreeze_payouts"


def copy_requests(apps, schema_editor):
    UnfreezeRequest = apps.get_model("merchants", "UnfreezeRequest")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    for old in UnfreezeRequest.objects.select_related("merchant").order_by("id").iterator():
        status, checker_id = old.status, old.decided_by_id
        if status == "withdrawn" or (status == "rejected" and checker_id == old.requested_by_id):
            status, checker_id = "cancelled", None
        new = ApprovalRequest.objects.create(
            kind=KIND,
            payload={"merchant_id": old.merchant_id, "frozen_reason": old.frozen_reason},
            reason=old.note or "-",
            bank_id=old.merchant.sponsor_bank_id,
            permission=PERMISSION,
            maker_id=old.requested_by_id,
            status=status,
            checker_id=checker_id,
            decided_at=old.decided_at,
            expires_at=now + timedelta(hours=72) if status == "pending" else old.created_at,
            result_type="merchants.merchant" if status == "approved" else "",
            result_id=str(old.merchant_id) if status == "approved" else "",
        )
        ApprovalRequest.objects.filter(pk=new.pk).update(created_at=old.created_at)  # set on insert; keep its own


def grant(apps, schema_editor):
    grant_permissions(apps, {"Alliance operators": [PERMISSION], "Bank operators": [PERMISSION]})


class Migration(migrations.Migration):
    dependencies = [("merchants", "0017_payouts_unfreeze_request"), ("core", "0013_approval_queue_grants_and_expiry")]

    operations = [
        migrations.AlterModelOptions(
            name="merchant",
            options={
                "ordering": ("code",),
                "permissions": [("unfreeze_payouts", "Can request and approve lifting a payout freeze")],
                "verbose_name": "merchant",
                "verbose_name_plural": "merchants",
            },
        ),
        migrations.RunPython(copy_requests, migrations.RunPython.noop),
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.DeleteModel(name="UnfreezeRequest"),
    ]
