"""PRC public holidays and 调休 working weekends, 2025–2027.

2025 and 2026 follow the State Council notices (国务院办公厅关于节假日安排的通知). 2027 is provisional: the statutory days
(New Year 1, Spring Festival 4, Qingming 1, Labour Day 2, Dragon Boat 1, Mid-Autumn 1, National Day 3) on their calendar
dates, without the exchange days, until the notice is published; operators replace it in the admin then.
Rows are added only where missing, so an operator's edits survive.
"""

from datetime import date, timedelta

from django.db import migrations


def _days(start, end):
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


HOLIDAYS = [
    # 2025
    (date(2025, 1, 1), date(2025, 1, 1), "元旦 New Year's Day"),
    (date(2025, 1, 28), date(2025, 2, 4), "春节 Spring Festival"),
    (date(2025, 4, 4), date(2025, 4, 6), "清明节 Qingming"),
    (date(2025, 5, 1), date(2025, 5, 5), "劳动节 Labour Day"),
    (date(2025, 5, 31), date(2025, 6, 2), "端午节 Dragon Boat Festival"),
    (date(2025, 10, 1), date(2025, 10, 8), "国庆节、中秋节 National Day and Mid-Autumn"),
    # 2026
    (date(2026, 1, 1), date(2026, 1, 3), "元旦 New Year's Day"),
    (date(2026, 2, 15), date(2026, 2, 23), "春节 Spring Festival"),
    (date(2026, 4, 4), date(2026, 4, 6), "清明节 Qingming"),
    (date(2026, 5, 1), date(2026, 5, 5), "劳动节 Labour Day"),
    (date(2026, 6, 19), date(2026, 6, 21), "端午节 Dragon Boat Festival"),
    (date(2026, 9, 25), date(2026, 9, 27), "中秋节 Mid-Autumn Festival"),
    (date(2026, 10, 1), date(2026, 10, 7), "国庆节 National Day"),
]
WORKDAYS = [
    (date(2025, 1, 26), "春节调休 Spring Festival exchange"),
    (date(2025, 2, 8), "春节调休 Spring Festival exchange"),
    (date(2025, 4, 27), "劳动节调休 Labour Day exchange"),
    (date(2025, 9, 28), "国庆节调休 National Day exchange"),
    (date(2025, 10, 11), "国庆节调休 National Day exchange"),
    (date(2026, 1, 4), "元旦调休 New Year exchange"),
    (date(2026, 2, 14), "春节调休 Spring Festival exchange"),
    (date(2026, 2, 28), "春节调休 Spring Festival exchange"),
    (date(2026, 5, 9), "劳动节调休 Labour Day exchange"),
    (date(2026, 9, 20), "国庆节调休 National Day exchange"),
    (date(2026, 10, 10), "国庆节调休 National Day exchange"),
]
PROVISIONAL_2027 = [
    (date(2027, 1, 1), date(2027, 1, 1), "元旦 New Year's Day"),
    (date(2027, 2, 5), date(2027, 2, 8), "春节 Spring Festival"),
    (date(2027, 4, 5), date(2027, 4, 5), "清明节 Qingming"),
    (date(2027, 5, 1), date(2027, 5, 2), "劳动节 Labour Day"),
    (date(2027, 6, 9), date(2027, 6, 9), "端午节 Dragon Boat Festival"),
    (date(2027, 9, 15), date(2027, 9, 15), "中秋节 Mid-Autumn Festival"),
    (date(2027, 10, 1), date(2027, 10, 3), "国庆节 National Day"),
]


def load(apps, schema_editor):
    CalendarDay = apps.get_model("core", "CalendarDay")
    existing = set(CalendarDay.objects.values_list("date", flat=True))
    rows = []
    for ranges, provisional in ((HOLIDAYS, False), (PROVISIONAL_2027, True)):
        for start, end, name in ranges:
            for day in _days(start, end):
                if day not in existing:
                    rows.append(CalendarDay(date=day, kind="holiday", name=name, provisional=provisional))
    for day, name in WORKDAYS:
        if day not in existing:
            rows.append(CalendarDay(date=day, kind="workday", name=name, provisional=False))
    CalendarDay.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [("core", "0002_audit_append_only")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
