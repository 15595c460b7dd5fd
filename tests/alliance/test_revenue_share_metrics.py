"""Each revenue-share metric, and the pool's lines, against a month worked out by hand (tests/alliance/
revenue_fixture.py); and the SQL the document quotes is the SQL the code runs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db.models import F

from alliance import metrics, services
from alliance.models import ClearingComponent
from core.calendar import SHANGHAI
from rewards.models import LedgerTransaction
from tests.alliance.revenue_fixture import build_month
from tests.factories import make_revenue_policy

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "revenue-share.md"


@pytest.fixture
def month():  # type: ignore[no-untyped-def]
    return build_month()


def _by_code(values: dict[int, int], month) -> dict[str, int]:  # type: ignore[no-untyped-def]
    codes = {bank.pk: code for code, bank in month.banks.items()}
    return {codes[bank]: value for bank, value in values.items() if bank in codes}


def test_benefits_taken_by_other_banks_cardholders(month) -> None:  # type: ignore[no-untyped-def]
    values = _by_code(metrics.metric_values(month.month)["benefits"], month)
    # RA's benefit: 30000 (RB's card, redeemed) + 12500 (RC's card, expired) = 42500; its own card's 20000 and the
    # cancelled 15000 do not count. RB's benefit is a merchant's (9000, not counted). RC's: 5000 (RB's card) this
    # month; 7000 was issued the month before.
    assert values == {"RA": 42_500, "RC": 5_000}


def test_active_cardholders(month) -> None:  # type: ignore[no-untyped-def]
    values = _by_code(metrics.metric_values(month.month)["active_cardholders"], month)
    # RA: holder 1 (two payments) and holder 2 (its RA card) = 2; RB: holder 2 = 1. RC's holder paid only the month
    # before, in a voided payment, in test mode and in HKD: none of them counts.
    assert values == {"RA": 2, "RB": 1}


def test_issuer_volume(month) -> None:  # type: ignore[no-untyped-def]
    values = _by_code(metrics.metric_values(month.month)["issuer_volume"], month)
    # RA: 10000 + 5000 + 3000 = 18000 (the failed refund of 1000 does not count); RB: 20000 − 5000 refunded = 15000;
    # RC: nothing captured, −2000 refunded this month on a payment of the month before.
    assert values == {"RA": 18_000, "RB": 15_000, "RC": -2_000}


def test_merchants_sponsored(month) -> None:  # type: ignore[no-untyped-def]
    values = _by_code(metrics.metric_values(month.month)["merchants_sponsored"], month)
    # RA sponsors m1 (paid this month); RB sponsors m2 and m3 (both paid). m1's test, HKD and earlier payments add none.
    assert values == {"RA": 1, "RB": 2}


def test_sponsored_volume(month) -> None:  # type: ignore[no-untyped-def]
    values = _by_code(metrics.metric_values(month.month)["sponsored_volume"], month)
    # RA (m1): 10000 − 2000 refunded (of last month's payment) = 8000; RB: m2 5000 + 20000 − 5000 and m3 3000 = 23000
    # (m3's voided 4000 does not count).
    assert values == {"RA": 8_000, "RB": 23_000}


def test_points_exchanged_in(month) -> None:  # type: ignore[no-untyped-def]
    values = _by_code(metrics.metric_values(month.month)["points_exchanged_in"], month)
    # RA → RB: 1000 points at 0.005 less 2 % = 1633 RB points at 0.003, worth 4.8990 (48990); a third reversed
    # (333 points) hands back floor(48990 × 333 / 1000) = 16313: 32677. RB → RA: 1000 at 0.003 → floor(1000 × 0.588)
    # = 588 RA points, worth 588 × 0.005 = 2.9400 (29400).
    assert values == {"RA": 29_400, "RB": 32_677}


def test_pool_lines(month) -> None:  # type: ignore[no-untyped-def]
    # Alliance fee parts: 600 + 1200 − 300 (refund) − 120 (refund of last month's payment) + 240 − 240 (voided) =
    # 1380 in CNY; last month's 420 is not this month's; the issuer's 7200 is not the alliance's; HKD 528 apart.
    assert metrics.fee_share(month.month) == {"CNY": 1_380, "HKD": 528}
    # Exchange fees: 1010 − floor(1010 × 333 / 1000) = 1010 − 336, and 30000 − 29400 = 600: 1274.
    assert metrics.exchange_fees(month.month) == 1_274


def test_nothing_in_another_month(month) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    later = (month.month + dt.timedelta(days=40)).replace(day=1)
    assert all(values == {} for values in metrics.metric_values(later).values())
    assert metrics.fee_share(later) == {}
    assert metrics.exchange_fees(later) == 0


def test_the_run_reads_what_the_definitions_say(month) -> None:  # type: ignore[no-untyped-def]
    """The run's reading (the four payment metrics in one statement, the exchanges from the clearing or the ledger)
    gives every metric the value of its own statement."""
    by_definition = metrics.metric_values_by_definition(month.month)
    assert metrics.metric_values(month.month) == by_definition
    assert by_definition["issuer_volume"]  # the fixture has something to compare in each
    assert all(by_definition[metric] for metric in metrics.PAYMENT_METRICS)


def _move_ledger(day: dt.date, hour: int = 12, **only: Any) -> None:
    at = dt.datetime.combine(day, dt.time(hour), tzinfo=SHANGHAI)
    LedgerTransaction.objects.redate(LedgerTransaction.objects.filter(**only).values_list("pk", flat=True), at)


def test_exchanges_are_read_from_the_days_cleared_and_the_ledger_for_the_rest(month) -> None:  # type: ignore[no-untyped-def]
    """The month's exchanges moved to a past month: a day with a clearing run is read from the run's components (a
    change there shows), a day without one from the ledger; either way the figures are the definitions'."""
    earlier = (month.month - dt.timedelta(days=1)).replace(day=1)
    day = earlier + dt.timedelta(days=9)
    _move_ledger(day)
    _move_ledger(day + dt.timedelta(days=1), kind="reversal")
    expected = ({_pk(month, "RA"): 29_400, _pk(month, "RB"): 32_677}, 1_274)

    before = metrics.exchanges(earlier)
    assert (before.points_exchanged_in, before.fees, before.cleared_days) == (*expected, frozenset())
    make_revenue_policy(status="approved", effective_from=dt.date(2020, 1, 1))
    first = services.revenue_share_compute(earlier)

    services.clearing_run(day)
    after = metrics.exchanges(earlier)
    assert (after.points_exchanged_in, after.fees, after.cleared_days) == (*expected, frozenset({day}))

    services.clearing_run(day + dt.timedelta(days=1))
    cleared = metrics.exchanges(earlier)
    assert (cleared.points_exchanged_in, cleared.fees) == expected
    assert cleared.cleared_days == frozenset({day, day + dt.timedelta(days=1)})
    assert ClearingComponent.objects.filter(kind="exchange_reversal").exists()
    assert metrics.metric_values(earlier)["points_exchanged_in"] == expected[0]
    assert metrics.metric_values_by_definition(earlier)["points_exchanged_in"] == expected[0]
    # Read from the clearing instead of the ledger, the month is the same version.
    assert services.revenue_share_compute(earlier).pk == first.pk
    assert first.exchange_fee_units == 1_274

    # What is read is what was cleared.
    ClearingComponent.objects.filter(kind="exchange_in", bank=month.banks["RB"]).update(amount=F("amount") + 7)
    assert metrics.exchanges(earlier).points_exchanged_in[_pk(month, "RB")] == 32_677 + 7


def _pk(month, code: str) -> int:  # type: ignore[no-untyped-def]
    return int(month.banks[code].pk)


def _quoted_sql(text: str) -> dict[str, str]:
    """The ```sql blocks of the document, each under a line naming its statement: `<!-- sql: name -->`."""
    return {
        name: body.strip()
        for name, body in re.findall(r"<!-- sql: (\w+) -->\s*```sql\n(.*?)```", text, flags=re.DOTALL)
    }


def test_the_document_quotes_every_statement_as_the_code_runs_it() -> None:
    quoted = _quoted_sql(DOC.read_text(encoding="utf-8"))
    assert set(quoted) == set(metrics.ALL_SQL)
    for name, sql in metrics.ALL_SQL.items():
        assert quoted[name] == sql, f"docs/revenue-share.md quotes {name} differently from alliance/metrics.py"


def test_every_table_the_statements_name_is_a_model_table() -> None:
    tables = {model._meta.db_table for model in apps.get_models()}
    for name, sql in metrics.ALL_SQL.items():
        named = set(re.findall(r"(?:FROM|JOIN)\s+([a-z_]+)\s", sql)) - set(re.findall(r"(\w+) AS \(", sql))
        assert named, name
        assert named <= tables, (name, named - tables)
