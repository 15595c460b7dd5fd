from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from core import calendar
from core.models import CalendarDay

D = dt.date
SH = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (D(2026, 2, 14), True),  # Saturday worked in exchange for the Spring Festival (调休)
        (D(2026, 2, 16), False),  # Spring Festival, a Monday
        (D(2026, 2, 23), False),  # last day of the nine-day break
        (D(2026, 2, 24), True),
        (D(2026, 1, 4), True),  # Sunday worked after New Year
        (D(2025, 10, 11), True),  # Saturday worked after National Day 2025
        (D(2025, 10, 8), False),
        (D(2026, 11, 21), False),  # an ordinary Saturday
        (D(2026, 11, 23), True),  # an ordinary Monday
        (D(2027, 2, 8), False),  # provisional 2027 Spring Festival
    ],
)
def test_working_days(day: dt.date, working: bool) -> None:
    assert calendar.is_working_day(day) is working


def test_next_working_day_and_t_plus_n_skip_golden_week() -> None:
    assert calendar.next_working_day(D(2025, 9, 30)) == D(2025, 10, 9)
    assert calendar.add_working_days(D(2025, 9, 30), 1) == D(2025, 10, 9)
    assert calendar.add_working_days(D(2025, 9, 30), 0) == D(2025, 9, 30)
    # T+1 from the Friday before the 2026 Spring Festival lands on the worked Saturday.
    assert calendar.add_working_days(D(2026, 2, 13), 1) == D(2026, 2, 14)
    assert calendar.add_working_days(D(2026, 2, 14), 1) == D(2026, 2, 24)
    # T+0 on a holiday is the next working day.
    assert calendar.add_working_days(D(2026, 10, 3), 0) == D(2026, 10, 8)
    with pytest.raises(ValueError, match="zero or positive"):
        calendar.add_working_days(D(2026, 1, 5), -1)


def test_business_date_respects_cutoff_and_holidays() -> None:
    cutoff = dt.time(23, 0)
    before = dt.datetime(2026, 9, 30, 22, 59, tzinfo=SH)
    after = dt.datetime(2026, 9, 30, 23, 0, tzinfo=SH)
    assert calendar.business_date(before, cutoff) == D(2026, 9, 30)
    assert calendar.business_date(after, cutoff) == D(2026, 10, 8)
    # The same instant in UTC belongs to the Shanghai day.
    assert calendar.business_date(dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC), cutoff) == D(2026, 11, 24)
    with pytest.raises(ValueError, match="naive"):
        calendar.business_date(dt.datetime(2026, 11, 23, 12, 0), cutoff)


def test_data_covers_2025_to_2027() -> None:
    years = set(CalendarDay.objects.dates("date", "year").values_list("date__year", flat=True))
    assert {2025, 2026, 2027} <= years
    assert CalendarDay.objects.filter(date__year=2026, kind="workday").count() == 6
    assert CalendarDay.objects.filter(date__year=2026, kind="holiday").count() == 33


def test_admin_edit_takes_effect_at_once(alliance_user) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    from tests.factories import PASSWORD

    assert calendar.is_working_day(D(2026, 12, 31)) is True
    client = Client()
    client.login(username=alliance_user.username, password=PASSWORD)
    response = client.post(
        reverse("admin:core_calendarday_add"), {"date": "2026-12-31", "kind": "holiday", "name": "Test closure"}
    )
    assert response.status_code == 302
    assert calendar.is_working_day(D(2026, 12, 31)) is False


def test_each_process_holds_the_calendar_briefly_and_forgets_it_on_its_own_change(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache

    from core import services

    settings.CALENDAR_CACHE_TTL = 1.0
    clock = [1_000.0]
    monkeypatch.setattr(calendar, "time_monotonic", lambda: clock[0])
    calendar.invalidate_calendar()
    day = D(2026, 11, 23)  # an ordinary Monday
    assert calendar.is_working_day(day) is True
    # Another process makes it a holiday: this one keeps what it holds for up to a second, then sees the change.
    CalendarDay.objects.create(date=day, kind=CalendarDay.Kind.HOLIDAY, name="test")
    cache.delete(calendar._CACHE_KEY)
    assert calendar.is_working_day(day) is True
    clock[0] += 1.5
    assert calendar.is_working_day(day) is False
    # A change made in this process is seen at once.
    CalendarDay.objects.filter(date=day).delete()
    services.calendar_changed()
    assert calendar.is_working_day(day) is True
