"""The three default segment rules, the nightly segment job's beat schedule (each created when missing, never
overwritten: operators edit them in the admin) and the permissions: alliance operators keep the rules and read the
memberships."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions

RULES = (
    {
        "code": "frequent_traveller",
        "name": "常旅客",
        "name_en": "Frequent traveller",
        "description": "过去一年在旅行或境外消费较多。",
        "description_en": "Travels often: travel and overseas payments over the past year.",
        "categories": ["travel", "overseas"],
        "window_days": 365,
        "min_payments": 3,
        "min_amount": 0,
    },
    {
        "code": "dining",
        "name": "美食爱好者",
        "name_en": "Dining out",
        "description": "近三个月经常在餐厅消费。",
        "description_en": "Eats out often: restaurant payments over the past three months.",
        "categories": ["dining"],
        "window_days": 90,
        "min_payments": 4,
        "min_amount": 0,
    },
    {
        "code": "high_spender",
        "name": "高消费",
        "name_en": "High spender",
        "description": "近三个月在联盟商户的净消费达到一万元。",
        "description_en": "Spent ¥10,000 or more, net of refunds, at alliance merchants over the past three months.",
        "categories": [],
        "window_days": 90,
        "min_payments": 0,
        "min_amount": 1_000_000,
    },
)


def rules(apps, schema_editor):
    SegmentRule = apps.get_model("alliance", "SegmentRule")
    for rule in RULES:
        SegmentRule.objects.get_or_create(code=rule["code"], defaults=rule)


def schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    quarter_past_two, _ = CrontabSchedule.objects.get_or_create(
        minute="15", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Shanghai"
    )
    PeriodicTask.objects.get_or_create(
        name="Segments: derive cardholders' tags from their payments",
        defaults={"task": "alliance.segments_nightly", "crontab": quarter_past_two, "enabled": True},
    )


def permissions(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": model_permissions("alliance.segmentrule", ["view", "add", "change"])
            + model_permissions("alliance.segmentmembership", ["view"]),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0006_segments"),
        ("core", "0004_operator_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(rules, migrations.RunPython.noop),
        migrations.RunPython(schedule, migrations.RunPython.noop),
        migrations.RunPython(permissions, migrations.RunPython.noop),
    ]
