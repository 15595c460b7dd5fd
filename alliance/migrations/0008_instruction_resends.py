"""A failed clearing instruction can be sent again by an alliance operator, under a new reference: the count of resends
on the instruction, and the permission for the alliance operators' group."""

from django.db import migrations, models

from core.roles import grant_permissions


def permissions(apps, schema_editor):
    grant_permissions(apps, {"Alliance operators": ["alliance.resend_clearinginstruction"]})


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0007_segment_rules_schedule_and_permissions"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="clearinginstruction",
            options={
                "ordering": ("run", "party_code"),
                "permissions": [("resend_clearinginstruction", "Can send a failed clearing instruction again")],
                "verbose_name": "clearing instruction",
                "verbose_name_plural": "clearing instructions",
            },
        ),
        migrations.AddField(
            model_name="clearinginstruction",
            name="resends",
            field=models.PositiveSmallIntegerField(
                default=0,
                help_text="Times an operator sent it again under a new reference after it failed.",
                verbose_name="resends",
            ),
        ),
        migrations.RunPython(permissions, migrations.RunPython.noop),
    ]
