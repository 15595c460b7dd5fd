"""PostgreSQL: a BRIN index on payments' `updated_at`, for the events catch-up sweep that looks at the payments
changed in the last half hour every minute. A BRIN index keeps one summary per range of pages, so a write almost never
touches it (a B-tree would take one more entry for every version of every payment); rows are appended in time order,
so recent changes sit in the last ranges. Other databases go without it."""

from typing import Any

from django.db import migrations

INDEX = "payments_paymentintent_updated_at_brin"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON payments_paymentintent USING brin (updated_at)")


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("payments", "0014_fewer_payment_indexes")]

    operations = [migrations.RunPython(create, drop)]
