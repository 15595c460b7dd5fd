"""Writes owned by the platform layer."""

from __future__ import annotations

from .audit import audit_record, snapshot
from .calendar import invalidate_calendar

__all__ = ("audit_record", "calendar_changed", "snapshot")


def calendar_changed() -> None:
    """Every process re-reads the calendar (at once here, within minutes elsewhere when the cache is local)."""
    invalidate_calendar()
