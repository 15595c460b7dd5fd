"""The PRC business calendar: Asia/Shanghai, working days with public holidays and 调休 working weekends.

A day is a working day when it is Monday–Friday and not a public holiday, or when it is a weekend day that the State
Council notice makes a working day in exchange. The exceptions live in `CalendarDay` (data for 2025–2027 ships in a
migration; operators edit it in the admin). Settlement asks for "T+N": N working days after the business date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic as time_monotonic
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

SHANGHAI = ZoneInfo("Asia/Shanghai")
_CACHE_KEY = "core:calendar:v1"
_CACHE_SECONDS = 300


@dataclass(frozen=True)
class WorkingCalendar:
    holidays: frozenset[date]
    workdays: frozenset[date]
    first_year: int | None
    last_year: int | None

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        candidate = day + timedelta(days=1)
        while not self.is_working_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    def working_day_on_or_after(self, day: date) -> date:
        return day if self.is_working_day(day) else self.next_working_day(day)

    def add_working_days(self, day: date, n: int) -> date:
        """T+N: N working days after `day` (T+0 is `day` itself when it is a working day, else the next one)."""
        if n < 0:
            raise ValueError("n must be zero or positive")
        current = self.working_day_on_or_after(day)
        for _ in range(n):
            current = self.next_working_day(current)
        return current

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in the half-open range [start, end)."""
        count = 0
        current = start
        while current < end:
            if self.is_working_day(current):
                count += 1
            current += timedelta(days=1)
        return count


# Every payment asks for its business date: each process also keeps the calendar for CALENDAR_CACHE_TTL
# (1 s), so most payments skip the shared cache's round trip and unpickling; a change reaches every process within it.
_held: tuple[float, WorkingCalendar] | None = None


def load_calendar() -> WorkingCalendar:
    global _held
    now = time_monotonic()
    if _held is not None and now - _held[0] < settings.CALENDAR_CACHE_TTL:
        return _held[1]
    calendar = _load_shared()
    _held = (now, calendar)
    return calendar


def _load_shared() -> WorkingCalendar:
    cached = cache.get(_CACHE_KEY)
    if isinstance(cached, WorkingCalendar):
        return cached
    from .models import CalendarDay

    rows = list(CalendarDay.objects.values_list("date", "kind"))
    holidays = frozenset(day for day, kind in rows if kind == CalendarDay.Kind.HOLIDAY)
    workdays = frozenset(day for day, kind in rows if kind == CalendarDay.Kind.WORKDAY)
    years = sorted({day.year for day, _ in rows})
    calendar = WorkingCalendar(holidays, workdays, years[0] if years else None, years[-1] if years else None)
    cache.set(_CACHE_KEY, calendar, _CACHE_SECONDS)
    return calendar


def invalidate_calendar() -> None:
    global _held
    _held = None
    cache.delete(_CACHE_KEY)


def is_working_day(day: date) -> bool:
    return load_calendar().is_working_day(day)


def next_working_day(day: date) -> date:
    return load_calendar().next_working_day(day)


def add_working_days(day: date, n: int) -> date:
    return load_calendar().add_working_days(day, n)


def local_now() -> datetime:
    return timezone.now().astimezone(SHANGHAI)


def local_date(moment: datetime) -> date:
    if timezone.is_naive(moment):
        raise ValueError("naive datetime: every datetime in Mengka is aware")
    return moment.astimezone(SHANGHAI).date()


def business_date(moment: datetime, cutoff: time) -> date:
    """The settlement date of something that happened at `moment` on a channel with daily cut-off `cutoff`.

    At or after the cut-off the day rolls over; the result is then moved to the next working day.
    """
    day = local_date(moment)
    if moment.astimezone(SHANGHAI).time() >= cutoff:
        day += timedelta(days=1)
    return load_calendar().working_day_on_or_after(day)
