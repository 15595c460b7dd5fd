"""A payment's business date is held to the capture window (payments/windows.py): from its creation's date in
Asia/Shanghai to CAPTURE_SPAN_DAYS (50) days after it. A CHECK on the partitioned table, which PostgreSQL adds to
every partition; the rows there already must keep it (a payment captured within the window does)."""

import payments.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0047_payments_partitioned"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="paymentintent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("business_date__isnull", True),
                    models.Q(
                        ("business_date__gte", payments.models.ShanghaiDate("created_at")),
                        ("business_date__lte", payments.models.ShanghaiDate("created_at", days=50)),
                    ),
                    _connector="OR",
                ),
                name="payment_business_date_in_capture_window",
            ),
        ),
    ]
