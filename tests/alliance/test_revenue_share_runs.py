"""The revenue-share run: the pool, the split worked out by hand, re-runs, restatements, the weighting rules, and
the parts summing exactly to the pool whatever the numbers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.core.management import call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance import services
from alliance.models import METRICS, AllianceCost, MembershipFee, RevenueShareRun
from alliance.services.revenue_share import bank_shares, split_pool
from core.errors import NotFound, ValidationFailed
from core.models import AuditLog, JobRun
from tests.alliance.revenue_fixture import build_month, this_month
from tests.factories import make_revenue_policy

pytestmark = pytest.mark.django_db


def _setup(month: Any) -> None:
    """Policy (pool: half active cardholders, half issuer volume; costs: all on merchants sponsored), fees, costs."""
    make_revenue_policy(
        status="approved",
        effective_from=dt.date(2020, 1, 1),
        weights={"active_cardholders": Decimal("0.5"), "issuer_volume": Decimal("0.5")},
        cost_weights={"merchants_sponsored": Decimal(1)},
    )
    for code, fee in (("RA", 100_000), ("RB", 50_000), ("RC", 50_000)):
        MembershipFee.objects.create(
            bank=month.banks[code], amount=fee, effective_from=dt.date(2020, 1, 1), status="approved"
        )
    AllianceCost.objects.create(month=month.month, amount=30_000, description="hosting")
    AllianceCost.objects.create(month=month.month, amount=10_001, description="audit")


def _statements(run: RevenueShareRun) -> dict[str, Any]:
    return {s.bank.code: s for s in run.statements.select_related("bank")}


def test_a_month_shared_by_hand() -> None:
    month = build_month()
    _setup(month)
    run = services.revenue_share_run(month.month)

    # Pool: fee share 1380 + exchange fees 1274 = 2654 ten-thousandths = 26.54 fen → 27 fen (half to even, once);
    # membership 100000 + 50000 + 50000 = 200000 fen: 200027 fen.
    assert (run.fee_share_units, run.exchange_fee_units, run.membership_fees) == (1_380, 1_274, 200_000)
    assert run.pool == 200_027
    assert run.unpooled == {"HKD": 528}
    assert (run.version, run.status, run.costs) == (1, "provisional", 40_001)  # this month is still open

    # Shares: active cardholders RA 2/3, RB 1/3; issuer volume RA 18000/33000 = 6/11, RB 5/11, RC −2000 counts 0.
    # RA = ½·2/3 + ½·6/11 = 20/33; RB = ½·1/3 + ½·5/11 = 13/33; RC = 0.
    # RA: 200027 × 20/33 = 121228 remainder 16/33; RB: 200027 × 13/33 = 78798 remainder 17/33; the 1 fen left goes
    # to the larger remainder, RB: 121228 + 78799 = 200027.
    # Costs 40001 by merchants sponsored (RA 1, RB 2): RA 13333 r 2/3, RB 26667 r 1/3; the fen left to RA: 13334.
    statements = _statements(run)
    assert set(statements) == {"RA", "RB", "RC"}
    got = {code: (s.amount, s.cost, s.net) for code, s in statements.items()}
    assert got == {"RA": (121_228, 13_334, 107_894), "RB": (78_799, 26_667, 52_132), "RC": (0, 0, 0)}
    assert sum(s.amount for s in statements.values()) == run.pool
    assert sum(s.cost for s in statements.values()) == run.costs
    assert statements["RA"].share == Decimal("0.606060606061")  # 20/33 shown to 12 places
    assert statements["RA"].active_cardholders == 2
    assert statements["RC"].issuer_volume == -2_000
    lines = {line["metric"]: line for line in statements["RA"].lines}
    assert set(lines) == set(METRICS)
    assert (lines["issuer_volume"]["value"], lines["issuer_volume"]["total"]) == (18_000, 33_000)
    assert lines["issuer_volume"]["weight"] == "0.5000"
    assert lines["issuer_volume"]["weighted_share"] == "0.272727272727"  # ½ × 6/11
    assert lines["benefits"]["effective_weight"] == "0.000000000000"
    assert all(s.amount_difference is None for s in statements.values())  # the first version has nothing to compare
    assert AuditLog.objects.filter(action="alliance.revenue_share.run", object_id=str(run.pk)).exists()
    job = JobRun.objects.get(job="alliance.revenue_share", period=f"{month.month:%Y-%m}")
    assert (job.status, job.done) == ("succeeded", 1)


def test_the_same_month_again_is_the_same_version() -> None:
    month = build_month()
    _setup(month)
    first = services.revenue_share_run(month.month)
    again = services.revenue_share_run(month.month)
    assert again.pk == first.pk
    assert RevenueShareRun.objects.filter(month=month.month).count() == 1


def test_a_changed_month_is_a_new_version_showing_the_difference() -> None:
    month = build_month()
    _setup(month)
    first = services.revenue_share_run(month.month)
    AllianceCost.objects.create(month=month.month, amount=10_000, description="late invoice")
    second = services.revenue_share_run(month.month)

    assert (second.version, second.previous_id, second.costs) == (2, first.pk, 50_001)
    first.refresh_from_db()
    assert first.status == "superseded"
    # Costs 50001 by 1 : 2 → RA 50001/3 = 16667 and RB 100002/3 = 33334 exactly.
    statements = _statements(second)
    assert {code: (s.amount, s.cost) for code, s in statements.items()} == {
        "RA": (121_228, 16_667),
        "RB": (78_799, 33_334),
        "RC": (0, 0),
    }
    # Differences from version 1: shares unchanged; RA's cost 16667 − 13334 = +3333, RB's 33334 − 26667 = +6667.
    diffs = {code: (s.amount_difference, s.cost_difference, s.net_difference) for code, s in statements.items()}
    assert diffs == {"RA": (0, 3_333, -3_333), "RB": (0, 6_667, -6_667), "RC": (0, 0, 0)}
    assert statements["RA"].previous.run_id == first.pk  # type: ignore[union-attr]
    assert AuditLog.objects.filter(action="alliance.revenue_share.restate", object_id=str(second.pk)).exists()
    # And that version is now the one a re-run returns.
    assert services.revenue_share_run(month.month).pk == second.pk


def test_a_policy_approved_for_the_month_restates_it() -> None:
    month = build_month()
    _setup(month)
    first = services.revenue_share_run(month.month)
    make_revenue_policy(status="approved", effective_from=month.month, weights={"benefits": Decimal(1)})
    second = services.revenue_share_run(month.month)
    assert second.version == 2
    assert second.policy_id != first.policy_id
    # All on benefits: RA 42500, RC 5000 of 47500 → RA 17/19, RC 2/19 of 200027: RA 178971 remainder 10/19, RC 21055
    # remainder 9/19; the fen left goes to RA: 178972 + 21055 = 200027.
    assert {code: s.amount for code, s in _statements(second).items()} == {"RA": 178_972, "RB": 0, "RC": 21_055}


def test_no_policy_or_a_month_not_begun_is_refused_and_writes_nothing() -> None:
    with pytest.raises(NotFound):
        services.revenue_share_run(this_month())
    make_revenue_policy(status="approved", effective_from=dt.date(2020, 1, 1))
    later = (this_month() + dt.timedelta(days=40)).replace(day=1)
    with pytest.raises(ValidationFailed):
        services.revenue_share_run(later)
    with pytest.raises(ValidationFailed):
        services.month_start("2026-13")
    assert not RevenueShareRun.objects.exists()


def test_the_command_runs_a_month() -> None:
    import io

    month = build_month()
    _setup(month)
    out = io.StringIO()
    call_command("revenue_share", "--month", f"{month.month:%Y-%m}", stdout=out)
    assert f"{month.month:%Y-%m} version 1 (provisional): pool 2,000.27 CNY" in out.getvalue()


def test_the_monthly_task_runs_the_previous_month() -> None:
    from alliance.tasks import revenue_share_monthly

    make_revenue_policy(status="approved", effective_from=dt.date(2020, 1, 1))
    result = revenue_share_monthly()
    assert result["month"] == f"{services.previous_month():%Y-%m}"
    assert RevenueShareRun.objects.get().status == "final"  # a month that has ended


def test_the_beat_schedule_exists() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="alliance.revenue_share_monthly")
    assert task.enabled
    assert task.crontab is not None
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, str(cron.timezone)) == ("0", "3", "3", "Asia/Shanghai")


# --- the rules, by themselves ----------------------------------------------------------------------------------------


def test_an_all_zero_metric_gives_its_weight_to_the_others_pro_rata() -> None:
    weights = {m: Decimal(0) for m in METRICS} | {
        "benefits": Decimal("0.5"),  # nobody contributed a benefit: its half goes to the other two, 1 : 3
        "active_cardholders": Decimal("0.125"),
        "issuer_volume": Decimal("0.375"),
    }
    values = {"active_cardholders": {1: 1, 2: 3}, "issuer_volume": {1: 100, 2: 0}}
    shares, effective = bank_shares(values, weights, [1, 2])
    assert effective["benefits"] == 0
    assert (effective["active_cardholders"], effective["issuer_volume"]) == (Fraction(1, 4), Fraction(3, 4))
    # Bank 1: ¼ × 1/4 + ¾ × 1 = 13/16; bank 2: ¼ × 3/4 = 3/16.
    assert shares == {1: Fraction(13, 16), 2: Fraction(3, 16)}


def test_nothing_to_weigh_by_means_equal_shares() -> None:
    weights = {m: Decimal(0) for m in METRICS} | {"benefits": Decimal(1)}
    shares, _ = bank_shares({"issuer_volume": {1: 5}}, weights, [1, 2, 3])
    assert shares == {1: Fraction(1, 3), 2: Fraction(1, 3), 3: Fraction(1, 3)}
    assert split_pool(100, list(shares.values())) == [34, 33, 33]  # ties to the earlier bank (code order)


def test_a_negative_pool_is_split_the_same_way() -> None:
    assert split_pool(-100, [Fraction(1, 3), Fraction(2, 3)]) == [-33, -67]


@settings(max_examples=60, deadline=None)
@given(
    pool=st.integers(min_value=-(10**12), max_value=10**13),
    values=st.lists(
        st.lists(st.integers(min_value=-(10**9), max_value=10**12), min_size=len(METRICS), max_size=len(METRICS)),
        min_size=1,
        max_size=8,
    ),
    raw_weights=st.lists(st.integers(min_value=0, max_value=10_000), min_size=len(METRICS), max_size=len(METRICS)),
)
def test_the_parts_always_sum_exactly_to_the_pool(pool: int, values: list[list[int]], raw_weights: list[int]) -> None:
    total = sum(raw_weights) or 1
    # Weights with four decimals summing to exactly 1: the last takes what the others leave.
    weights = [Decimal(w * 10_000 // total) / 10_000 for w in raw_weights[:-1]]
    weights.append(1 - sum(weights, Decimal(0)))
    by_metric = {m: {bank: row[i] for bank, row in enumerate(values)} for i, m in enumerate(METRICS)}
    banks = list(range(len(values)))
    shares, _ = bank_shares(by_metric, dict(zip(METRICS, weights, strict=True)), banks)
    assert sum(shares.values()) == 1
    assert all(share >= 0 for share in shares.values())
    parts = split_pool(pool, [shares[b] for b in banks])
    assert sum(parts) == pool
    for bank, part in zip(banks, parts, strict=True):
        assert abs(part - pool * shares[bank]) < 1  # within one fen of the exact share
