"""Settlement's data: the reserve by risk grade, refunds' business dates for the refunds made before they were
stamped, and the settlement jobs' beat schedules (created when missing, never overwritten: operators edit them in the
admin)."""

from django.conf import settings
from django.db import migrations

RESERVES = [("low", "0", 0), ("medium", "5", 20), ("high", "10", 60)]


def reserve_policies(apps, schema_editor):
    ReservePolicy = apps.get_model("payments", "ReservePolicy")
    for grade, percent, days in RESERVES:
        ReservePolicy.objects.get_or_create(
            risk_grade=grade, defaults={"percent": percent, "hold_working_days": days}
        )


def refund_business_dates(apps, schema_editor):
    """A refund's business date as `core.calendar.business_date` gives it at completion: the local day (the next one
    at or after its payment's channel cut-off), moved to the first working day on or after it by the calendar."""
    tables = {
        name: apps.get_model(label)._meta.db_table
        for name, label in {
            "refund": "payments.Refund",
            "payment": "payments.PaymentIntent",
            "channel": "payments.Channel",
            "calendar": "core.CalendarDay",
        }.items()
    }
    schema_editor.execute(
        f"""
        UPDATE {tables['refund']} r SET business_date = (
          SELECT min(d)::date FROM generate_series(stamped.day, stamped.day + 40, interval '1 day') d
          LEFT JOIN {tables['calendar']} c ON c.date = d::date
          WHERE c.kind = 'workday' OR (c.kind IS NULL AND extract(isodow FROM d) < 6)
        )
        FROM (
          SELECT r2.id,
                 (r2.completed_at AT TIME ZONE 'Asia/Shanghai')::date
                 + CASE WHEN (r2.completed_at AT TIME ZONE 'Asia/Shanghai')::time >= COALESCE(ch.cutoff, '23:00')
                        THEN 1 ELSE 0 END AS day
          FROM {tables['refund']} r2
          JOIN {tables['payment']} p ON p.id = r2.intent_id
          LEFT JOIN {tables['channel']} ch ON ch.id = p.channel_id
          WHERE r2.status = 'succeeded' AND r2.business_date IS NULL AND r2.completed_at IS NOT NULL
        ) stamped
        WHERE r.id = stamped.id
        """
    )


def schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")

    def crontab(hour: int, minute: int):
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=str(minute),
            hour=str(hour),
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone="Asia/Shanghai",
        )
        return schedule

    PeriodicTask.objects.get_or_create(
        name="Settle T+1 merchants",
        defaults={"task": "payments.settlement_t1", "crontab": crontab(2, 0), "enabled": True},
    )
    for window in settings.SETTLEMENT_T0_WINDOWS:
        hour, minute = (int(part) for part in window.split(":"))
        # A minute after the window closes, so that what was captured just before it is committed.
        at = (hour * 60 + minute + 1) % (24 * 60)
        PeriodicTask.objects.get_or_create(
            name=f"Settle T+0 merchants ({window} window)",
            defaults={"task": "payments.settlement_t0", "crontab": crontab(at // 60, at % 60), "enabled": True},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0030_settlement_run"),
        ("core", "0003_business_calendar"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(reserve_policies, migrations.RunPython.noop),
        migrations.RunPython(refund_business_dates, migrations.RunPython.noop),
        migrations.RunPython(schedules, migrations.RunPython.noop),
    ]
