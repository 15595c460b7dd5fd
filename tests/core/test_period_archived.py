"""A job over a period is refused when a month of a table it reads in that period was archived (core.partitions
`refuse_archived`): clearing a day, sharing out a month's revenue and importing a channel's statement would otherwise
miss the archived rows and record a wrong result (a day netted to nothing, a month shared short, every statement row
raised as missing on our side). Refused before anything is written."""

from __future__ import annotations

import datetime as dt

import pytest

from alliance.models import ClearingRun, RevenueShareRun
from alliance.services.clearing import clearing_run
from alliance.services.revenue_share import revenue_share_run
from core.models import ArchivedMonth
from core.partitions import PeriodArchived, refuse_archived
from payments.models import StatementImport
from payments.services.reconciliation import statement_import
from tests.factories import ChannelFactory, MemberBankFactory
from tests.partitioning import at

pytestmark = pytest.mark.django_db


def _archived(table: str, month: dt.date) -> None:
    """The month recorded as archived, as the partitions job records it."""
    ArchivedMonth.objects.create(table=table, month=month, archive_table=f"{table}_archive_{month:%Y%m}")


def test_a_range_touching_an_archived_month_is_refused_and_one_ending_at_its_start_is_not() -> None:
    _archived("rewards_entry", dt.date(2025, 3, 1))
    refuse_archived(["rewards_entry"], at(2025, 2, 10), at(2025, 3, 1, 0))  # up to March's first instant: none of it
    refuse_archived(["payments_paymentintent"], at(2025, 3, 2), at(2025, 3, 3))  # another table's month
    with pytest.raises(PeriodArchived) as refused:
        refuse_archived(["payments_paymentintent", "rewards_entry"], at(2025, 2, 10), at(2025, 3, 1, 1), param="day")
    assert refused.value.code == "period_archived"
    assert refused.value.param == "day"
    assert "rewards_entry made in 2025-03 have been archived" in refused.value.message
    with pytest.raises(PeriodArchived):  # a range inside the month
        refuse_archived(["rewards_entry"], at(2025, 3, 10), at(2025, 3, 11))


def test_clearing_a_day_whose_entries_were_archived_is_refused_and_records_no_run() -> None:
    _archived("rewards_entry", dt.date(2025, 3, 1))
    with pytest.raises(PeriodArchived, match="rewards_entry made in 2025-03"):
        clearing_run(dt.date(2025, 3, 10))
    assert not ClearingRun.objects.exists()
    clearing_run(dt.date(2025, 4, 10))  # the next month was not archived: cleared (nothing to net)
    assert ClearingRun.objects.get().business_day == dt.date(2025, 4, 10)


def test_sharing_out_a_month_whose_payments_or_entries_were_archived_is_refused() -> None:
    MemberBankFactory()
    _archived("payments_refund", dt.date(2024, 11, 1))  # inside March 2025's refund window
    with pytest.raises(PeriodArchived, match="payments_refund made in 2024-11"):
        revenue_share_run("2025-03")
    ArchivedMonth.objects.all().delete()
    _archived("rewards_entry", dt.date(2025, 3, 1))
    with pytest.raises(PeriodArchived, match="rewards_entry made in 2025-03"):
        revenue_share_run("2025-03")
    assert not RevenueShareRun.objects.exists()


def test_a_statement_of_a_day_whose_payments_were_archived_is_refused_and_keeps_nothing() -> None:
    channel = ChannelFactory()
    _archived("payments_paymentintent", dt.date(2025, 3, 1))
    with pytest.raises(PeriodArchived, match="payments_paymentintent made in 2025-03"):
        statement_import(channel=channel, day=dt.date(2025, 3, 10), text="whatever the file says")
    assert not StatementImport.objects.exists()
