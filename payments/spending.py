"""Spending at a glance: a cardholder's captured spending, net of refunds, by month and spend category and by
issuing bank, read in one GROUP BY (plus one read of the banks it names).

What counts: live payments that succeeded and were captured — `amount_captured − amount_refunded` of each, so a
refund is netted against the payment it returns, in the month of that payment. Voided payments (撤销), declined,
uncaptured and test-mode payments count for nothing. A payment's month is the month of its capture in
Asia/Shanghai, whatever the server's clock zone. Amounts stay integer minor units per currency: currencies are never
added together.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone
from django.utils.translation import gettext

from core.calendar import SHANGHAI
from members.models import Cardholder, MemberBank, SpendCategory

from .models import PaymentIntent
from .windows import captured_between

MONTHS = 12
# One colour per spend category, in the order SpendCategory lists them (the charts' legend and the tables' columns).
CATEGORY_COLOURS = {
    SpendCategory.DINING: "#d9480f",
    SpendCategory.TRAVEL: "#1971c2",
    SpendCategory.GROCERIES: "#2f9e44",
    SpendCategory.FUEL: "#f08c00",
    SpendCategory.ONLINE: "#7048e8",
    SpendCategory.OVERSEAS: "#0c8599",
    SpendCategory.OTHER: "#868e96",
}
NO_BANK_COLOUR = "#868e96"


@dataclass(frozen=True)
class Series:
    """One category's or one bank's spending: `monthly[i]` is the net of month `i`, in minor units."""

    key: str
    label: str
    colour: str
    monthly: list[int]

    @property
    def total(self) -> int:
        return sum(self.monthly)


@dataclass(frozen=True)
class CurrencySpending:
    currency: str
    by_category: list[Series]
    by_bank: list[Series]
    monthly: list[int]  # every category together, month by month

    @property
    def total(self) -> int:
        return sum(self.monthly)

    @property
    def this_month(self) -> int:
        return self.monthly[-1]


@dataclass(frozen=True)
class Spending:
    months: list[dt.date]  # the first day of each month, oldest first; the last is this month
    currencies: list[CurrencySpending]  # CNY first, then by code; empty when nothing was spent

    @property
    def start(self) -> dt.date:
        return self.months[0]


def month_starts(today: dt.date, count: int = MONTHS) -> list[dt.date]:
    """The first days of the `count` months ending with `today`'s, oldest first."""
    year, month = today.year, today.month
    months = []
    for _ in range(count):
        months.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months[::-1]


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=SHANGHAI)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def spent_between(cardholder_id: int, since: dt.datetime, until: dt.datetime) -> QuerySet[PaymentIntent]:
    """What counts as the cardholder's spending, captured in [since, until): live payments that succeeded and were
    captured (each worth `amount_captured − amount_refunded`). The one rule for every reader of a cardholder's
    spending (this page, the home page's tile, best card's import)."""
    return PaymentIntent.objects.filter(
        cardholder_id=cardholder_id,
        livemode=True,
        status=PaymentIntent.Status.SUCCEEDED,
        amount_captured__gt=0,
    ).filter(captured_between(since, until))


def _captured_in_months(cardholder: Cardholder, first: dt.date, last: dt.date) -> QuerySet[PaymentIntent]:
    """The cardholder's spending payments captured from month `first` to month `last`, both included (Shanghai)."""
    return spent_between(cardholder.pk, _local_midnight(first), _local_midnight(_next_month(last)))


def spending_at_a_glance(cardholder: Cardholder, *, now: dt.datetime | None = None) -> Spending:
    """The last twelve months (this one included) of the cardholder's spending. Two queries, whatever the number of
    cards and payments: the GROUP BY, and the banks it names."""
    today = (now or timezone.now()).astimezone(SHANGHAI).date()
    months = month_starts(today)
    position = {month: index for index, month in enumerate(months)}
    rows = (
        _captured_in_months(cardholder, months[0], months[-1])
        .annotate(month=TruncMonth("captured_at", tzinfo=SHANGHAI))
        .values("currency", "month", "spend_category", "issuer_id")
        .annotate(net=Sum(F("amount_captured") - F("amount_refunded")))
        .order_by()
    )
    by_category: dict[str, dict[str, list[int]]] = defaultdict(dict)
    by_bank: dict[str, dict[int | None, list[int]]] = defaultdict(dict)
    for row in rows:
        index = position[row["month"].astimezone(SHANGHAI).date()]
        currency = row["currency"]
        by_category[currency].setdefault(row["spend_category"], [0] * len(months))[index] += row["net"]
        by_bank[currency].setdefault(row["issuer_id"], [0] * len(months))[index] += row["net"]
    bank_ids = {bank_id for banks in by_bank.values() for bank_id in banks if bank_id is not None}
    banks = MemberBank.objects.in_bulk(bank_ids) if bank_ids else {}
    currencies = []
    for currency in sorted(by_category, key=lambda code: (code != "CNY", code)):
        categories = [
            Series(key=str(category), label=str(category.label), colour=CATEGORY_COLOURS[category], monthly=monthly)
            for category in SpendCategory
            if (monthly := by_category[currency].get(category.value)) is not None and any(monthly)
        ]
        bank_series = [_bank_series(banks.get(bank_id) if bank_id else None, monthly)
                       for bank_id, monthly in by_bank[currency].items() if any(monthly)]  # fmt: skip
        bank_series.sort(key=lambda series: (-series.total, series.key))
        if not categories:  # every payment of this currency refunded in full
            continue
        monthly = [sum(column) for column in zip(*(series.monthly for series in categories), strict=True)]
        currencies.append(
            CurrencySpending(currency=currency, by_category=categories, by_bank=bank_series, monthly=monthly)
        )
    return Spending(months=months, currencies=currencies)


def _bank_series(bank: MemberBank | None, monthly: list[int]) -> Series:
    if bank is None:
        return Series(key="", label=gettext("other"), colour=NO_BANK_COLOUR, monthly=monthly)
    return Series(key=bank.code, label=bank.local_name, colour=bank.brand_colour or NO_BANK_COLOUR, monthly=monthly)


def spent_this_month(cardholder: Cardholder, *, now: dt.datetime | None = None) -> dict[str, int]:
    """This calendar month's (Asia/Shanghai) net spending per currency, CNY first: one aggregate query."""
    month = (now or timezone.now()).astimezone(SHANGHAI).date().replace(day=1)
    rows = (
        _captured_in_months(cardholder, month, month)
        .values("currency")
        .annotate(net=Sum(F("amount_captured") - F("amount_refunded")))
        .order_by()
    )
    totals = {row["currency"]: row["net"] for row in rows if row["net"]}
    return dict(sorted(totals.items(), key=lambda item: (item[0] != "CNY", item[0])))
