"""Payments record the mode of the key that made them; everything made before (and outside the API) is live."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("payments", "0012_points_part_payment")]

    operations = [
        migrations.AddField(
            model_name="paymentintent",
            name="livemode",
            field=models.BooleanField(
                default=True, help_text="Unticked: made with a test key, in the sandbox.", verbose_name="live mode"
            ),
        ),
        # The merchant's list is now per mode: the index leads with both, and replaces the one on merchant alone.
        migrations.AddIndex(
            model_name="paymentintent",
            index=models.Index(fields=["merchant", "livemode", "-id"], name="payments_pa_merchan_3ee0dd_idx"),
        ),
        migrations.RemoveIndex(model_name="paymentintent", name="payments_pa_merchan_5488d8_idx"),
    ]
