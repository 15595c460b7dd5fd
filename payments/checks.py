"""System checks of payments' settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from .windows import CAPTURE_DAYS_LIMIT, REFUND_DAYS_LIMIT


@register()
def check_windows(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The capture and refund windows may be shortened, not lengthened past the limits the database's check on
    payments and the reads by business date rely on (payments/windows.py)."""
    found: list[CheckMessage] = []
    for name, limit in (("PAYMENT_CAPTURE_DAYS", CAPTURE_DAYS_LIMIT), ("REFUND_WINDOW_DAYS", REFUND_DAYS_LIMIT)):
        value = getattr(settings, name)
        if not 1 <= value <= limit:
            found.append(
                Error(
                    f"{name} is {value}; it must be from 1 to {limit} days.",
                    hint="A longer window needs the payments' check and payments/windows.py changed together.",
                    id="payments.E001",
                )
            )
    return found
