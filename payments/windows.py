"""How late a payment may be captured and refunded, and what that says about the months a business date's payments
and refunds live in (docs/scaling.md, "Partitioning by month").

A payment is captured within `PAYMENT_CAPTURE_DAYS` of its creation and refunded within `REFUND_WINDOW_DAYS` of its
capture; the services refuse what comes later. A business date is the capture's (or the refund's) date in
Asia/Shanghai, the next day after the channel's cut-off, moved on to a working day — so it follows the creation by at
most the window plus `SLACK_DAYS`. The database holds the payments to it (a check on the table, with
`CAPTURE_DAYS_LIMIT`): the settings may shorten the windows, never lengthen them past the limits, which is what the
reads below rely on.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q

from core.calendar import SHANGHAI, local_date

# The longest windows the database and the reads allow; PAYMENT_CAPTURE_DAYS and REFUND_WINDOW_DAYS may be shorter.
CAPTURE_DAYS_LIMIT = 30
REFUND_DAYS_LIMIT = 180
# From the last instant a window allows to the business date of what it allowed: the resolver recording a capture
# or refund whose answer came late (it asks every few minutes), the cut-off's next day, and the longest run of days
# off on the PRC calendar (nine, the Spring Festival), with room to spare.
SLACK_DAYS = 20
# A payment's business date is on or after its creation date and at most this many days after it.
CAPTURE_SPAN_DAYS = CAPTURE_DAYS_LIMIT + SLACK_DAYS
# A refund's business date is on or after its payment's creation date and at most this many days after it.
REFUND_SPAN_DAYS = CAPTURE_SPAN_DAYS + REFUND_DAYS_LIMIT + SLACK_DAYS
# A payment or refund that a reconciliation exception or a dispute held from settlement is taken by the merchant's next
# batch once the hold is lifted, however old it is — if that was in the last this many days (payments/services/
# settlement.py): its month is kept that long after the lift (`RELEASED_HOLDS`, below).
RELEASED_HOLD_DAYS = 90


def capture_window() -> dt.timedelta:
    """How long after its creation a payment may be confirmed or captured."""
    return dt.timedelta(days=settings.PAYMENT_CAPTURE_DAYS)


def refund_window() -> dt.timedelta:
    """How long after its capture a payment may be refunded."""
    return dt.timedelta(days=settings.REFUND_WINDOW_DAYS)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)


def payments_created_for(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The half-open range of `created_at` of the payments whose business date is in [first, last] — and of those
    captured on those days in Asia/Shanghai, since a capture's business date is on or after its own date."""
    return _day_start(first - dt.timedelta(days=CAPTURE_SPAN_DAYS)), _day_start(last + dt.timedelta(days=1))


def refunds_created_for(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The half-open range of `intent_created_at` (their payment's `created_at`) of the refunds whose business date
    is in [first, last]."""
    return _day_start(first - dt.timedelta(days=REFUND_SPAN_DAYS)), _day_start(last + dt.timedelta(days=1))


def payments_created_for_captures(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The half-open range of `created_at` of the payments captured in [start, end): a payment is captured after its
    creation and on or before its business date, which the database holds to `CAPTURE_SPAN_DAYS` after it."""
    return payments_created_for(local_date(start), local_date(end))


def captured_between(start: dt.datetime, end: dt.datetime) -> Q:
    """Payments captured in [start, end), with the months they can have been made in (for the ORM's readers)."""
    created_from, created_to = payments_created_for_captures(start, end)
    return Q(captured_at__gte=start, captured_at__lt=end, created_at__gte=created_from, created_at__lt=created_to)


# A hold lifted in the last RELEASED_HOLD_DAYS: the merchant's next batch may still take the payment or refund it held,
# from its month, so the exception's or dispute's month is kept (`OPEN_ROWS`, registered in payments/apps.py), and the
# payment's and refund's with it (they are referred to). Whether the payment is on a line by then is not asked: that
# month of the lines goes before the exceptions' and disputes' (they refer to the payment it names), so a line would
# not be found where it is. A month is kept at most RELEASED_HOLD_DAYS longer for it, and only for a hold.
_LIFTED = "holds_settlement AND {lifted} > %(today)s - make_interval(days => {days}) AND {status}"
RELEASED_HOLD = f"a hold lifted in the last {RELEASED_HOLD_DAYS} days may still be settled"
RELEASED_HOLDS: dict[str, str] = {
    "payments_reconciliationexception": _LIFTED.format(
        lifted="resolved_at", days=RELEASED_HOLD_DAYS, status="status IN ('resolved', 'superseded')"
    ),
    "payments_dispute": _LIFTED.format(
        lifted="closed_at", days=RELEASED_HOLD_DAYS, status="status NOT IN ('open', 'evidence_submitted')"
    ),
}
