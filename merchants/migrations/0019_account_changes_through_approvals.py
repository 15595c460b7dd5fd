"""Settlement account changes move to the maker-checker mechanism (core.ApprovalRequest, kind
"merchants.settlement_account_change").

Every change is copied there with its outcome (approved -> approved, the merchant's settlement account as its result;
rejected -> rejected), its account number still encrypted, so the history stays readable in one queue; pending ones
wait again for the full expiry. Asking and deciding need the new permission "merchants.change_account", given to bank
and alliance operators."""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone

from core.roles import grant_permissions

KIND = "merchants.settlement_account_change"
PERMISSION = "merchants.change_account"


def copy_changes(apps, schema_editor):
    SettlementAccountChange = apps.get_model("merchants", "SettlementAccountChange")
    SettlementAccount = apps.get_model("merchants", "SettlementAccount")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    for old in SettlementAccountChange.objects.select_related("merchant").order_by("id").iterator():
        status, checker_id = old.status, old.decided_by_id
        if status == "rejected" and checker_id in (None, old.requested_by_id):
            status, checker_id = "cancelled", None
        account_id = SettlementAccount.objects.filter(merchant_id=old.merchant_id).values_list("pk", flat=True).first()
        approved = status == "approved" and account_id is not None
        new = ApprovalRequest.objects.create(
            kind=KIND,
            payload={
                "merchant_id": old.merchant_id,
                "account_name": old.account_name,
                "bank_name": old.bank_name,
                "account_encrypted": old.account_encrypted,
                "account_last4": old.account_last4,
            },
            reason="-",
            bank_id=old.merchant.sponsor_bank_id,
            permission=PERMISSION,
            maker_id=old.requested_by_id,
            status=status,
            checker_id=checker_id,
            decided_at=old.decided_at or (old.created_at if status != "pending" else None),
            expires_at=now + timedelta(hours=72) if status == "pending" else old.created_at,
            result_type="merchants.settlementaccount" if approved else "",
            result_id=str(account_id) if approved else "",
        )
        ApprovalRequest.objects.filter(pk=new.pk).update(created_at=old.created_at)  # set on insert; keep its own


def grant(apps, schema_editor):
    grant_permissions(apps, {"Alliance operators": [PERMISSION], "Bank operators": [PERMISSION]})


class Migration(migrations.Migration):
    dependencies = [("merchants", "0018_unfreeze_through_approvals")]

    operations = [
        migrations.AlterModelOptions(
            name="settlementaccount",
            options={
                "permissions": [("change_account", "Can request and approve a settlement account change")],
                "verbose_name": "settlement account",
                "verbose_name_plural": "settlement accounts",
            },
        ),
        migrations.RunPython(copy_changes, migrations.RunPython.noop),
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.DeleteModel(name="SettlementAccountChange"),
    ]
