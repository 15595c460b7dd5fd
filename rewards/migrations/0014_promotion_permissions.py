"""Operators' permissions on merchants' promotions: bank operators read them and act on them (the change right backs
the co-funding and pause actions; no page edits a promotion's terms), auditors read them and their uses."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def permissions(apps, schema_editor):
    read = model_permissions("rewards.promotion", ["view"]) + model_permissions("rewards.promotionuse", ["view"])
    act = model_permissions("rewards.promotion", ["change"])
    grant_permissions(
        apps,
        {"Alliance operators": read + act, "Bank operators": read + act, "Bank auditors": read},
    )


class Migration(migrations.Migration):
    dependencies = [("rewards", "0013_promotions")]
    operations = [migrations.RunPython(permissions, migrations.RunPython.noop)]
