"""Publishing a benefit moves to the maker-checker mechanism (core.ApprovalRequest, kind "rewards.benefit_publish").

A benefit waiting for approval goes back to draft, and its request waits in the approval queue for the full expiry,
made by the same operator (the old flow took no reason: "-"). A benefit published under the old flow keeps its history
there as an approved request (its asker the maker, its approver the checker, the benefit the result). A benefit now has
`updated_at`, the version a request names: one edited after the request is refused at approval. The benefit's own
request fields and its "pending approval" status are gone."""

import datetime as dt

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

KIND = "rewards.benefit_publish"
PERMISSION = "rewards.change_benefit"


def version(benefit):
    return benefit.updated_at.astimezone(dt.UTC).isoformat()


def copy_requests(apps, schema_editor):
    Benefit = apps.get_model("rewards", "Benefit")
    ApprovalRequest = apps.get_model("core", "ApprovalRequest")
    now = timezone.now()
    hours = settings.APPROVAL_EXPIRY_HOURS
    expires = now + dt.timedelta(hours=int(hours.get(KIND, hours["default"])))
    for benefit in Benefit.objects.exclude(status="draft").filter(requested_by__isnull=False).order_by("id").iterator():
        base = {
            "kind": KIND,
            "payload": {"benefit_id": benefit.pk, "version": version(benefit)},
            "bank_id": benefit.bank_id,
            "permission": PERMISSION,
            "maker_id": benefit.requested_by_id,
        }
        if benefit.status == "pending":
            ApprovalRequest.objects.create(**base, reason="-", status="pending", expires_at=expires)
        elif benefit.approved_by_id is not None and benefit.approved_by_id != benefit.requested_by_id:
            decided = benefit.published_at or benefit.created_at
            new = ApprovalRequest.objects.create(
                **base,
                reason="-",
                status="approved",
                checker_id=benefit.approved_by_id,
                decided_at=decided,
                expires_at=decided,
                result_type="rewards.benefit",
                result_id=str(benefit.pk),
            )
            ApprovalRequest.objects.filter(pk=new.pk).update(created_at=decided)  # set on insert; keep its own
    Benefit.objects.filter(status="pending").update(status="draft")


class Migration(migrations.Migration):
    dependencies = [("rewards", "0020_adjustments_through_approvals"), ("core", "0014_jobrun_rerun_permission")]

    operations = [
        migrations.AddField(
            model_name="benefit",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=timezone.now, verbose_name="updated"),
            preserve_default=False,
        ),
        migrations.RunPython(copy_requests, migrations.RunPython.noop),
        migrations.RemoveField(model_name="benefit", name="requested_by"),
        migrations.RemoveField(model_name="benefit", name="approved_by"),
        migrations.AlterField(
            model_name="benefit",
            name="status",
            field=models.CharField(
                choices=[("draft", "draft"), ("published", "published"), ("withdrawn", "withdrawn")],
                default="draft",
                max_length=16,
                verbose_name="status",
            ),
        ),
    ]
