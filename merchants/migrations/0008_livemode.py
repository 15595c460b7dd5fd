"""Events, webhook endpoints and stores record the mode of the key that made them; existing ones are live."""

from django.db import migrations, models

LIVEMODE_HELP = "Unticked: made with a test key, in the sandbox."


class Migration(migrations.Migration):
    dependencies = [("merchants", "0007_events_catch_up_schedule")]

    operations = [
        migrations.AddField(
            model_name="event",
            name="livemode",
            field=models.BooleanField(default=True, help_text=LIVEMODE_HELP, verbose_name="live mode"),
        ),
        migrations.AddField(
            model_name="store",
            name="livemode",
            field=models.BooleanField(default=True, help_text=LIVEMODE_HELP, verbose_name="live mode"),
        ),
        migrations.AddField(
            model_name="webhookendpoint",
            name="livemode",
            field=models.BooleanField(
                default=True, help_text="Receives the events of this mode only.", verbose_name="live mode"
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["merchant", "livemode", "-id"], name="merchants_e_merchan_ce9882_idx"),
        ),
        migrations.RemoveIndex(model_name="event", name="merchants_e_merchan_d6d402_idx"),
        migrations.AddConstraint(
            model_name="store",
            constraint=models.UniqueConstraint(
                fields=("merchant", "livemode", "code"), name="store_code_unique_per_merchant_mode"
            ),
        ),
        migrations.RemoveConstraint(model_name="store", name="store_code_unique_per_merchant"),
    ]
