"""An adjustment request names a cardholder by foreign key (chosen in the admin through the scoped autocomplete), not
a typed id. Pending requests that name no existing cardholder are rejected first; a posted one that does cannot be
repaired by a migration (its points sit in an account for nobody): the migration stops and names it, to be reversed
by an operator before it runs again."""

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone


def reject_dangling_requests(apps, schema_editor):
    AdjustmentRequest = apps.get_model("rewards", "AdjustmentRequest")
    Cardholder = apps.get_model("members", "Cardholder")
    dangling = AdjustmentRequest.objects.exclude(cardholder__in=Cardholder.objects.values("pk"))
    dangling.filter(status="pending").update(status="rejected", decided_at=timezone.now())
    posted = list(dangling.exclude(status="rejected").values_list("pk", flat=True))
    if posted:
        raise RuntimeError(
            f"Adjustment requests {posted} were posted for cardholders that do not exist; reverse their ledger "
            "transactions and mark them rejected before migrating."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0003_cardholder_cardproduct_card_binrange_consenttext_and_more"),
        ("rewards", "0007_seal_version_and_digests"),
    ]

    operations = [
        migrations.RenameField(model_name="adjustmentrequest", old_name="cardholder_id", new_name="cardholder"),
        migrations.RunPython(reject_dangling_requests, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="adjustmentrequest",
            name="cardholder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="members.cardholder",
                verbose_name="cardholder",
            ),
        ),
    ]
