"""Revenue-share terms (policies and membership fees) move to the maker-checker mechanism (core.ApprovalRequest, kind
"alliance.revenue_share_terms"): a version is a draft or approved, and who made and checked it is its request.

Every version that was submitted is copied to the queue with its outcome, so its history stays readable in one place:
approved -> an approved request (the version as its result), rejected -> a rejected request (the version becomes a
draft again, as a rejection now leaves it), pending -> a pending request waiting the full expiry (the version a
draft). A decision its own maker made (the database refused it, so none should exist) becomes cancelled. A version
approved without a recorded maker has nothing to copy; its audit rows stay. Submitting and approving need the new
permission "alliance.approve_terms", given to alliance operators."""

from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone

from core.roles import grant_permissions

KIND = "alliance.revenue_share_terms"
PERMISSION = "alliance.approve_terms"
METRICS = (
    "benefits",
    "active_cardholders",
    "issuer_volume",
    "merchants_sponsored",
    "sponsored_volume",
    "points_exchanged_in",
)


def _terms(name, version):
    common = {"effective_from": version.effective_from.isoformat()}
    if name == "revenuesharepolicy":
        return common | {
            "version": version.version,
            "weights": {m: str(getattr(version, f"weight_{m}")) for m in METRICS},
            "cost_weights": {m: str(getattr(version, f"cost_weight_{m}")) for m in METRICS},
        }
    return common | {"bank_id": version.bank_id, "amount": version.amount}


def copy_submitted(apps, schema_editor):
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    for name in ("revenuesharepolicy", "membershipfee"):
        model = apps.get_model("alliance", name)
        for old in model.objects.exclude(status="draft").order_by("id").iterator():
            status, checker_id = old.status, old.decided_by_id
            if old.proposed_by_id is not None:
                if status != "pending" and checker_id in (None, old.proposed_by_id):
                    status, checker_id = "cancelled", None
                approved = status == "approved"
                new = ApprovalRequest.objects.create(
                    kind=KIND,
                    payload={"model": name, "version_id": old.pk, "terms": _terms(name, old)},
                    reason=old.reason or "-",
                    bank_id=None,
                    permission=PERMISSION,
                    maker_id=old.proposed_by_id,
                    status=status,
                    checker_id=checker_id,
                    decision_reason=(old.decision_note or "-") if status == "rejected" else "",
                    decided_at=old.decided_at if status != "pending" else None,
                    expires_at=now + timedelta(hours=72)
                    if status == "pending"
                    else (old.proposed_at or old.created_at),
                    result_type=f"alliance.{name}" if approved else "",
                    result_id=str(old.pk) if approved else "",
                )
                created = old.proposed_at or old.created_at
                ApprovalRequest.objects.filter(pk=new.pk).update(created_at=created)  # set on insert; keep its own
            if old.status != "approved":
                model.objects.filter(pk=old.pk).update(status="draft")


def grant(apps, schema_editor):
    grant_permissions(apps, {"Alliance operators": [PERMISSION]})


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0009_clearing_exchange_reversal"),
        ("core", "0014_jobrun_rerun_permission"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="revenuesharepolicy",
            options={
                "ordering": ("-version",),
                "permissions": [("approve_terms", "Can submit and approve revenue-share terms")],
                "verbose_name": "revenue-share policy",
                "verbose_name_plural": "revenue-share policies",
            },
        ),
        migrations.RunPython(copy_submitted, migrations.RunPython.noop),
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="membershipfee",
            name="membershipfee_checker_not_maker",
        ),
        migrations.RemoveConstraint(
            model_name="revenuesharepolicy",
            name="revenuesharepolicy_checker_not_maker",
        ),
        migrations.RemoveField(
            model_name="membershipfee",
            name="decided_at",
        ),
        migrations.RemoveField(
            model_name="membershipfee",
            name="decided_by",
        ),
        migrations.RemoveField(
            model_name="membershipfee",
            name="decision_note",
        ),
        migrations.RemoveField(
            model_name="membershipfee",
            name="proposed_at",
        ),
        migrations.RemoveField(
            model_name="membershipfee",
            name="proposed_by",
        ),
        migrations.RemoveField(
            model_name="revenuesharepolicy",
            name="decided_at",
        ),
        migrations.RemoveField(
            model_name="revenuesharepolicy",
            name="decided_by",
        ),
        migrations.RemoveField(
            model_name="revenuesharepolicy",
            name="decision_note",
        ),
        migrations.RemoveField(
            model_name="revenuesharepolicy",
            name="proposed_at",
        ),
        migrations.RemoveField(
            model_name="revenuesharepolicy",
            name="proposed_by",
        ),
        migrations.AlterField(
            model_name="membershipfee",
            name="status",
            field=models.CharField(
                choices=[("draft", "draft"), ("approved", "approved")],
                default="draft",
                max_length=16,
                verbose_name="status",
            ),
        ),
        migrations.AlterField(
            model_name="revenuesharepolicy",
            name="status",
            field=models.CharField(
                choices=[("draft", "draft"), ("approved", "approved")],
                default="draft",
                max_length=16,
                verbose_name="status",
            ),
        ),
    ]
