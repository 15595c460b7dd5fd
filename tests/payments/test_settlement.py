"""The settlement run on PostgreSQL: periods, exact totals traced to their lines, reserves, carries, holds, T+0
windows, the void window, and the stamps refunds carry for it."""

from __future__ import annotations

import datetime as dt
import io
import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError
from django.db.models import Sum
from django.utils import timezone

from core.calendar import add_working_days
from core.errors import Conflict, ValidationFailed
from core.models import JobRun
from payments import services
from payments.models import (
    FeeSplit,
    PaymentIntent,
    Refund,
    ReservePolicy,
    SettlementBatch,
    SettlementLine,
    SplitInstruction,
)
from payments.services import settlement
from rewards.models import Promotion, PromotionUse
from tests.factories import MerchantFactory, make_promotion
from tests.i18n import shown
from tests.payments.settling import SH, at, make_world, pay, refund

pytestmark = pytest.mark.django_db
D = dt.date
Batch = SettlementBatch
Line = SettlementLine
_serial = itertools.count(1)

# A plain week: Monday 2026-11-23 … Friday 2026-11-27 are working days, settled the next working day.
MON, TUE, WED, THU, FRI = (D(2026, 11, 23 + n) for n in range(5))
NEXT_MON = D(2026, 11, 30)


@pytest.fixture
def world() -> dict[str, Any]:
    return make_world()


def settle(day: dt.date, **kw: Any) -> settlement.SettleReport:
    return services.settle("t1", day.isoformat(), **kw)


def batch_of(merchant: Any, period: str, **kw: Any) -> SettlementBatch:
    return SettlementBatch.objects.get(merchant=merchant, period=period, **kw)


def lines_of(batch: SettlementBatch) -> dict[str, int]:
    return dict(batch.lines.values_list("kind").annotate(total=Sum("amount")))


def assert_traced(batch: SettlementBatch) -> None:
    """Every figure of the batch is the sum of its lines, and the net is the docstring's formula."""
    lines = batch.lines.all()
    payments = lines.filter(kind=Line.Kind.PAYMENT)
    refunds = lines.filter(kind=Line.Kind.REFUND)

    def total(rows: Any, field: str = "amount") -> int:
        return rows.aggregate(total=Sum(field))["total"] or 0

    assert batch.payments_count == payments.count()
    assert batch.gross == total(payments)
    assert batch.refunds_count == refunds.count()
    assert batch.refunds == -total(refunds)
    assert batch.fees == total(lines, "fee")
    assert batch.fee_total == int((Decimal(batch.fees) / 100).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    assert batch.promotion_charges == total(lines, "promotion_charge")
    assert batch.cofunding_credits == total(lines, "cofunding_credit")
    assert batch.reserve_released == total(lines.filter(kind=Line.Kind.RESERVE_RELEASE))
    assert batch.carried_in == total(lines.filter(kind=Line.Kind.CARRIED))
    assert batch.net == (
        batch.gross
        - batch.refunds
        - batch.fee_total
        - batch.promotion_charges
        + batch.cofunding_credits
        - batch.dispute_debits
        - batch.reserve_held
        + batch.reserve_released
        + batch.carried_in
    )
    assert sum(batch.fee_parties.values()) == batch.fees
    splits = SplitInstruction.objects.filter(batch=batch)
    fee_splits = splits.exclude(party__in=["merchant", "reserve"])
    assert total(fee_splits) == batch.fees
    if batch.status in (Batch.Status.SETTLED, Batch.Status.HELD):
        assert total(splits.filter(party="merchant")) == batch.net * 100
    else:
        assert not splits.filter(party="merchant").exists()
    assert total(splits.filter(party="reserve")) == batch.reserve_held * 100


# --- the T+1 batch ------------------------------------------------------------------------------------------------


def test_a_business_dates_batch_equals_the_direct_sums_of_its_payments_refunds_fees_and_promotions(
    world: dict[str, Any],
) -> None:
    merchant = world["merchant"]
    payments = [pay(world, amount, TUE) for amount in (10_001, 25_000, 333)]
    partly = refund(payments[1], 5_000, TUE, promotion_cost_returned=40, cofunding_returned=25)
    later_day = pay(world, 7_000, WED)  # business date Wednesday: not in Tuesday's batch
    points = make_promotion(merchant=merchant, kind=Promotion.Kind.POINTS_MULTIPLIER, amount_off=None,
                            multiplier=Decimal("2"))  # fmt: skip
    discount = make_promotion(merchant=merchant, cofunder=world["issuer"], cofunder_share=Decimal("0.5"),
                              cofunding=Promotion.Cofunding.APPROVED)  # fmt: skip
    for promo, cost, cofunder_cost in ((points, 300, 100), (discount, 1_000, 500)):
        PromotionUse.objects.create(
            promotion=promo,
            cardholder=world["card"].cardholder,
            payment=payments[0].public_id,
            day=TUE,
            status=PromotionUse.Status.CONSUMED,
            cost=cost,
            cofunder_cost=cofunder_cost,
        )
    PaymentIntent.objects.filter(pk=payments[0].pk).update(promotions=[{"promotion": "x"}])

    report = settle(TUE)

    assert (report.merchants, report.batches, report.lines) == (1, 1, 4)
    batch = batch_of(merchant, TUE.isoformat())
    mine = PaymentIntent.objects.filter(pk__in=[p.pk for p in payments])
    assert (batch.cycle, batch.settle_on, batch.status) == ("t1", WED, Batch.Status.SETTLED)
    assert batch.cutoff_at == at(TUE, 23)
    assert batch.payments_count == 3
    assert batch.gross == mine.aggregate(total=Sum("amount_captured"))["total"] == 35_334
    assert (batch.refunds_count, batch.refunds) == (1, 5_000)
    # Fees: charged on capture less what the refund handed back, by party, in hundredths; rounded once.
    direct = FeeSplit.objects.filter(payment__in=mine)
    assert batch.fees == direct.aggregate(total=Sum("amount"))["total"] == sum(p.fee for p in mine) - 3_000
    assert batch.fee_parties == dict(direct.values_list("party").annotate(total=Sum("amount")))
    assert batch.fee_total == 182  # 18,201 hundredths
    # The merchant pays for the points it gave (less the co-funder's part) and is credited the bank's part of the
    # discount; the refund gives back what it returned of the first and takes back what it returned of the second.
    assert (batch.promotion_charges, batch.cofunding_credits) == (200 - 40, 500 - 25)
    assert batch.net == 35_334 - 5_000 - 182 - 160 + 475
    assert batch.settled_at is not None
    assert_traced(batch)
    assert not Line.objects.filter(payment=later_day).exists()
    assert Line.objects.get(refund=partly).amount == -5_000
    # 分账: the issuer, acquirer, channel and alliance their fee shares, with their banks; the merchant its net.
    splits = {(s.party, s.bank_id): s.amount for s in SplitInstruction.objects.filter(batch=batch)}
    assert splits[("issuer", world["issuer"].pk)] == batch.fee_parties["issuer"]
    assert splits[("acquirer", world["sponsor"].pk)] == batch.fee_parties["acquirer"]
    assert splits[("merchant", None)] == batch.net * 100
    assert set(SplitInstruction.objects.filter(batch=batch).values_list("acquirer", flat=True)) == {world["sponsor"].pk}
    run = JobRun.objects.get(job="settlement.t1", period=TUE.isoformat())
    assert (run.status, run.done, run.total, run.counts) == ("succeeded", 1, 1, {"batches": 1, "lines": 4})


def test_fees_are_rounded_once_per_batch_not_per_payment(world: dict[str, Any]) -> None:
    for _ in range(3):
        pay(world, 100, TUE, fee=50)  # half a fen each: 0 or 1 each if rounded alone
    settle(TUE)
    batch = batch_of(world["merchant"], TUE.isoformat())
    assert (batch.fees, batch.fee_total) == (150, 2)  # 1.5 fen, rounded half up once
    assert batch.net == 300 - 2


def test_a_payment_captured_after_the_cutoff_lands_in_the_next_batch_never_in_two(world: dict[str, Any]) -> None:
    before = pay(world, 1_000, TUE, captured_at=at(TUE, 22, 59))
    after = pay(world, 2_000, WED, captured_at=at(TUE, 23, 0))  # past the channel's cut-off: Wednesday's
    settle(TUE)
    settle(WED)
    assert Line.objects.get(payment=before).batch.period == TUE.isoformat()
    assert Line.objects.get(payment=after).batch.period == WED.isoformat()
    assert Line.objects.filter(kind="payment").count() == 2


def test_a_payment_no_run_could_see_lands_in_the_next_batch(world: dict[str, Any]) -> None:
    settle(TUE)
    straggler = pay(world, 1_500, TUE)  # Tuesday's, but made visible only after Tuesday was settled
    pay(world, 2_500, WED)
    settle(WED)
    batch = batch_of(world["merchant"], WED.isoformat())
    assert Line.objects.get(payment=straggler).batch == batch
    assert (batch.payments_count, batch.gross) == (2, 4_000)


def test_the_catch_up_looks_back_working_days_not_calendar_days(world: dict[str, Any]) -> None:
    """Two working days back by default: across National Day 2026 the period of 8 October still reaches 29 September."""
    assert settlement.t1_period(D(2026, 10, 8)).business_from == D(2026, 9, 29)
    assert settlement.t1_period(WED).business_from == MON
    old, recent = pay(world, 1_000, D(2026, 11, 20)), pay(world, 2_000, MON)  # a Friday, three working days back
    settle(WED)
    assert list(Line.objects.values_list("payment", flat=True)) == [recent.pk]
    assert not Line.objects.filter(payment=old).exists()


def test_a_refund_of_a_settled_payment_lands_in_a_later_batch_as_a_negative_line(world: dict[str, Any]) -> None:
    intent = pay(world, 10_000, TUE)
    settle(TUE)
    made = refund(intent, 4_000, THU)
    settle(WED)
    assert not Line.objects.filter(refund=made).exists()  # its business date is Thursday
    settle(THU)
    line = Line.objects.get(refund=made)
    assert (line.batch.period, line.kind, line.amount) == (THU.isoformat(), "refund", -4_000)
    assert line.payment_id == intent.pk  # traced to the payment it refunds
    assert line.fee == -2_400  # 40 % of the capture's 6,000 hundredths handed back
    batch = line.batch
    assert (batch.gross, batch.refunds, batch.fees, batch.fee_total) == (0, 4_000, -2_400, -24)
    assert batch.net == -4_000 + 24
    assert_traced(batch)


def test_settling_a_period_again_is_a_no_op(world: dict[str, Any]) -> None:
    pay(world, 1_000, TUE)
    first = settle(TUE)
    before = list(Line.objects.values_list("id", "batch_id", "amount"))
    again = settle(TUE)
    assert (first.batches, again.batches, again.lines, again.merchants) == (1, 0, 0, 0)
    assert list(Line.objects.values_list("id", "batch_id", "amount")) == before
    assert JobRun.objects.filter(job="settlement.t1", period=TUE.isoformat(), status="succeeded").count() == 2


def test_a_frozen_merchants_batch_is_held_with_the_reason(world: dict[str, Any]) -> None:
    merchant = world["merchant"]
    merchant.payouts_frozen, merchant.frozen_reason = True, "KYC review"
    merchant.save()
    pay(world, 1_000, TUE)
    quiet = MerchantFactory(payouts_frozen=True)
    pay(world, 1_000, TUE, merchant=quiet)
    settle(TUE)
    batch = batch_of(merchant, TUE.isoformat())
    assert (batch.status, batch.hold_reason) == (Batch.Status.HELD, "KYC review")
    assert batch_of(quiet, TUE.isoformat()).hold_reason == shown("Payouts frozen")  # no reason given: the default
    assert_traced(batch)


def test_a_negative_net_is_carried_and_shows_as_carried_in_next_time(world: dict[str, Any]) -> None:
    merchant = world["merchant"]
    big = pay(world, 50_000, MON)
    settle(MON)
    refund(big, 50_000, TUE)
    pay(world, 1_000, TUE)
    settle(TUE)
    negative = batch_of(merchant, TUE.isoformat())
    assert negative.status == Batch.Status.CARRIED
    assert negative.net == negative.carried_out == 1_000 - 50_000 + 300 - 6  # the fee handed back, less the new one
    assert_traced(negative)
    settle(WED)  # nothing new: the debt alone makes no batch, it waits for the next one with something in it
    assert not Batch.objects.filter(merchant=merchant, period=WED.isoformat()).exists()
    pay(world, 100_000, THU)
    settle(THU)
    paid = batch_of(merchant, THU.isoformat())
    line = paid.lines.get(kind="carried")
    assert (line.source, line.amount) == (negative, negative.net)
    assert paid.carried_in == negative.net
    assert paid.net == 100_000 - 600 + negative.net
    assert paid.status == Batch.Status.SETTLED
    assert_traced(paid)
    settle(FRI)
    assert not Batch.objects.filter(merchant=merchant, period=FRI.isoformat()).exists()  # nothing left to carry


# --- reserves -----------------------------------------------------------------------------------------------------


def test_the_reserve_is_held_by_risk_grade_and_released_on_its_working_day_across_a_holiday(
    world: dict[str, Any],
) -> None:
    """2026: National Day closes 1–7 October, Saturday 10 October is worked (调休). A medium-risk merchant's
    reserve held in the batch settled on 8 October, two working days on, comes back on Saturday the 10th."""
    assert ReservePolicy.objects.get(risk_grade="low").percent == 0
    assert (ReservePolicy.objects.get(risk_grade="high").percent, ReservePolicy.objects.get(risk_grade="high")
            .hold_working_days) == (Decimal("10"), 60)  # fmt: skip
    ReservePolicy.objects.filter(risk_grade="medium").update(percent=Decimal("5"), hold_working_days=2)
    merchant = world["merchant"]
    merchant.risk_grade = "medium"
    merchant.save()
    low = MerchantFactory()
    pay(world, 100_000, D(2026, 9, 30))
    pay(world, 100_000, D(2026, 9, 30), merchant=low)

    settle(D(2026, 9, 30))
    held = batch_of(merchant, "2026-09-30")
    assert held.settle_on == D(2026, 10, 8)
    assert held.reserve_held == (100_000 - 600) * 5 // 100 == 4_970
    assert held.reserve_release_on == D(2026, 10, 10)
    assert held.net == 100_000 - 600 - 4_970
    assert_traced(held)
    assert (batch_of(low, "2026-09-30").reserve_held, batch_of(low, "2026-09-30").reserve_release_on) == (0, None)

    pay(world, 1_001, D(2026, 10, 8))
    settle(D(2026, 10, 8))  # settled on the 9th: not due yet
    assert not Line.objects.filter(kind="reserve_release").exists()
    assert batch_of(merchant, "2026-10-08").reserve_held == (1_001 - 6) * 5 // 100

    settle(D(2026, 10, 9))  # settled on Saturday the 10th, a working day: released, though nothing else happened
    released = batch_of(merchant, "2026-10-09")
    line = released.lines.get(kind="reserve_release")
    assert (line.source, line.amount) == (held, 4_970)
    assert (released.settle_on, released.reserve_released, released.reserve_held) == (D(2026, 10, 10), 4_970, 0)
    assert (released.net, released.status) == (4_970, Batch.Status.SETTLED)
    assert_traced(released)
    settle(D(2026, 10, 12))
    assert Line.objects.filter(kind="reserve_release", source=held).count() == 1  # released once


# --- T+0 ------------------------------------------------------------------------------------------------------------


def test_t0_windows_take_what_was_captured_before_their_cutoff(world: dict[str, Any]) -> None:
    merchant = world["merchant"]
    merchant.settlement_cycle = "t0"
    merchant.save()
    t1_merchant = MerchantFactory()
    morning = pay(world, 1_000, TUE, captured_at=at(TUE, 9, 59))
    noon = pay(world, 2_000, TUE, captured_at=at(TUE, 10, 0))
    evening = pay(world, 3_000, WED, captured_at=at(TUE, 23, 30))  # after the last window: next morning's
    pay(world, 4_000, TUE, captured_at=at(TUE, 9, 0), merchant=t1_merchant)
    back = refund(morning, 500, TUE, completed_at=at(TUE, 13, 0))

    services.settle("t0", "2026-11-24T10:00")
    first = batch_of(merchant, "2026-11-24T10:00")
    assert (first.cycle, first.settle_on, first.cutoff_at) == ("t0", TUE, at(TUE, 10))
    assert [line.payment_id for line in first.lines.all()] == [morning.pk]
    assert not Batch.objects.filter(merchant=t1_merchant).exists()

    services.settle("t0", "2026-11-24T14:00")
    second = batch_of(merchant, "2026-11-24T14:00")
    assert dict(second.lines.values_list("kind", "amount")) == {"payment": 2_000, "refund": -500}
    assert_traced(second)
    services.settle("t0", "2026-11-24T18:00")
    assert not Batch.objects.filter(period="2026-11-24T18:00").exists()
    services.settle("t0", "2026-11-25T10:00")
    assert Line.objects.get(payment=evening).batch.period == "2026-11-25T10:00"
    assert Line.objects.get(refund=back).batch == second
    assert Line.objects.filter(payment=noon).count() == 1


def test_t0_periods_are_the_configured_windows_and_must_have_closed() -> None:
    with pytest.raises(ValidationFailed, match="not a T\\+0 window"):
        services.settle("t0", "2026-11-24T11:00")
    with pytest.raises(ValidationFailed, match="not a working day"):
        services.settle("t1", "2026-10-03")
    with pytest.raises(ValidationFailed, match="not over yet"):
        services.settle("t1", add_working_days(timezone.localdate(), 5).isoformat())
    with pytest.raises(ValidationFailed, match="Not a period"):
        services.settle("t1", "yesterday")


def test_the_due_jobs_settle_each_period_once_in_order(world: dict[str, Any]) -> None:
    pay(world, 1_000, MON)
    pay(world, 2_000, TUE)
    reports = services.settle_due_t1(today=WED)  # Monday's and Tuesday's days have come (Tuesday's is today)
    assert [report.period for report in reports][-2:] == [MON.isoformat(), TUE.isoformat()]
    assert Line.objects.get(payment__amount=1_000).batch.period == MON.isoformat()
    assert services.settle_due_t1(today=WED) == []
    merchant = world["merchant"]
    merchant.settlement_cycle = "t0"
    merchant.save()
    pay(world, 3_000, WED, captured_at=at(WED, 13))
    reports = services.settle_due_t0(now=at(WED, 14, 1))
    assert [report.period for report in reports][-1] == "2026-11-25T14:00"
    assert Line.objects.get(payment__amount=3_000).batch.period == "2026-11-25T14:00"
    assert services.settle_due_t0(now=at(WED, 14, 2)) == []


def test_the_jobs_are_celery_tasks_on_editable_beat_schedules(world: dict[str, Any]) -> None:
    from django.core.management import call_command
    from django_celery_beat.models import PeriodicTask

    from payments import tasks

    schedules = {
        task.name: (task.task, task.crontab.hour, task.crontab.minute, task.crontab.timezone.key)
        for task in PeriodicTask.objects.filter(task__startswith="payments.settlement_").select_related("crontab")
    }
    assert schedules == {
        "Settle T+1 merchants": ("payments.settlement_t1", "2", "0", "Asia/Shanghai"),
        "Settle T+0 merchants (10:00 window)": ("payments.settlement_t0", "10", "1", "Asia/Shanghai"),
        "Settle T+0 merchants (14:00 window)": ("payments.settlement_t0", "14", "1", "Asia/Shanghai"),
        "Settle T+0 merchants (18:00 window)": ("payments.settlement_t0", "18", "1", "Asia/Shanghai"),
    }
    day = add_working_days(timezone.localdate() - dt.timedelta(days=7), 0)  # a week ago's business date
    pay(world, 1_000, day)
    results = tasks.settlement_t1.delay().get()
    assert {"cycle": "t1", "period": day.isoformat(), "merchants": 1, "chunks": 1, "batches": 1, "lines": 1} in results
    assert tasks.settlement_t1.delay().get() == []
    assert isinstance(tasks.settlement_t0.delay().get(), list)
    pay(world, 2_000, day)
    out = io.StringIO()
    call_command("settle", "--cycle", "t1", "--period", day.isoformat(), stdout=out)
    assert f"settle t1 {day.isoformat()}: 0 merchant(s)" in out.getvalue()  # settled already: the straggler waits
    with pytest.raises(CommandError, match="not a T\\+0 window"):
        call_command("settle", "--cycle", "t0", "--period", "2026-11-24T11:00", stdout=io.StringIO())


# --- acquirers ----------------------------------------------------------------------------------------------------


def test_payments_through_several_acquirers_get_one_instruction_set_per_acquirer(world: dict[str, Any]) -> None:
    pay(world, 10_000, TUE)
    pay(world, 20_000, TUE, channel=world["other_channel"])
    second = pay(world, 5_000, TUE, channel=world["other_channel"])
    refund(second, 5_000, TUE)
    settle(TUE)
    batch = batch_of(world["merchant"], TUE.isoformat())
    assert_traced(batch)
    splits = SplitInstruction.objects.filter(batch=batch)
    sponsor, other = world["sponsor"], world["other_acquirer"]
    assert set(splits.values_list("acquirer", flat=True)) == {sponsor.pk, other.pk}

    def at_acquirer(bank: Any, party: str) -> int:
        return splits.filter(acquirer=bank, party=party).aggregate(total=Sum("amount"))["total"] or 0

    # Each acquirer instructs its own payments' fees and pays the merchant its own funds less them.
    assert at_acquirer(sponsor, "acquirer") == 6_000 * 25 // 100
    assert at_acquirer(other, "acquirer") == 12_000 * 25 // 100
    assert splits.get(acquirer=other, party="acquirer").bank_id == other.pk
    assert at_acquirer(other, "merchant") == 20_000 * 100 - 12_000
    # The sponsor bank leads: its own part and the rest of the net (the fee's rounding).
    assert at_acquirer(sponsor, "merchant") == batch.net * 100 - at_acquirer(other, "merchant")
    assert at_acquirer(sponsor, "merchant") == 10_000 * 100 - 6_000 + (batch.fees - batch.fee_total * 100)


def test_currencies_and_modes_are_batches_of_their_own(world: dict[str, Any]) -> None:
    pay(world, 1_000, TUE)
    pay(world, 2_000, TUE, currency="HKD")
    pay(world, 3_000, TUE, livemode=False)
    settle(TUE)
    batches = Batch.objects.filter(merchant=world["merchant"], period=TUE.isoformat())
    assert sorted(batches.values_list("currency", "livemode", "gross")) == [
        ("CNY", False, 3_000),
        ("CNY", True, 1_000),
        ("HKD", True, 2_000),
    ]
    assert batches.get(livemode=False).fees == 0  # a test-mode payment owes no one anything


def test_chunks_settle_every_merchant_once(world: dict[str, Any]) -> None:
    merchants = [MerchantFactory() for _ in range(5)]
    for n, merchant in enumerate(merchants):
        pay(world, 1_000 + n, TUE, merchant=merchant)
    report = settle(TUE, chunk_merchants=2)
    assert (report.merchants, report.chunks, report.batches, report.lines) == (5, 3, 5, 5)
    assert sorted(Batch.objects.values_list("gross", flat=True)) == [1_000, 1_001, 1_002, 1_003, 1_004]


def test_each_chunk_takes_its_own_merchants_refunds_and_no_others(world: dict[str, Any]) -> None:
    merchants = [MerchantFactory() for _ in range(5)]
    made = {}
    for n, merchant in enumerate(merchants):
        intent = pay(world, 10_000, TUE, merchant=merchant)
        made[merchant.pk] = refund(intent, 1_000 + n, THU)  # settled on Thursday, apart from its payment
        assert made[merchant.pk].merchant_id == merchant.pk  # a refund carries its payment's merchant
    settle(TUE)
    report = settle(THU, chunk_merchants=2)
    assert (report.merchants, report.chunks, report.batches, report.lines) == (5, 3, 5, 5)
    for merchant in merchants:
        line = Line.objects.get(batch__merchant=merchant, batch__period=THU.isoformat())
        assert (line.kind, line.refund_id, line.amount) == ("refund", made[merchant.pk].pk, -made[merchant.pk].amount)


# --- the void window ---------------------------------------------------------------------------------------------


@pytest.fixture
def live(channel_fake: Any, world: dict[str, Any]) -> dict[str, Any]:
    return world


def paid(world: dict[str, Any], amount: int = 5_000) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=f"settle-{next(_serial)}",
        confirm=True,
    )


def void(world: dict[str, Any], intent: PaymentIntent) -> PaymentIntent:
    return services.payment_cancel(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=f"void-{next(_serial)}"
    )


def test_a_payment_on_a_settlement_line_is_never_voided(live: dict[str, Any]) -> None:
    intent = paid(live)
    assert settlement.void_deadline(intent) == dt.datetime.combine(intent.business_date, live["channel"].cutoff,
                                                                   tzinfo=SH)  # fmt: skip
    batch = Batch.objects.create(
        merchant=live["merchant"], currency="CNY", cycle="t1", period="x", cutoff_at=timezone.now(),
        settle_on=timezone.localdate(),
    )  # fmt: skip
    Line.objects.create(
        batch=batch, kind="payment", payment=intent, payment_created_at=intent.created_at, amount=intent.amount_captured
    )
    with pytest.raises(Conflict, match="refund it instead"):
        void(live, intent)
    intent.refresh_from_db()
    assert intent.status == "succeeded"


def test_the_cancels_guard_refuses_a_payment_put_on_a_line_after_the_check(
    live: dict[str, Any], monkeypatch: Any
) -> None:
    intent = paid(live)
    batch = Batch.objects.create(
        merchant=live["merchant"], currency="CNY", cycle="t1", period="x", cutoff_at=timezone.now(),
        settle_on=timezone.localdate(),
    )  # fmt: skip
    from payments.services import cancel

    def settled_meanwhile(payment: PaymentIntent) -> bool:
        Line.objects.create(
            batch=batch, kind="payment", payment_id=payment.pk, payment_created_at=payment.created_at,
            amount=intent.amount_captured,
        )  # fmt: skip
        return False

    monkeypatch.setattr(cancel, "on_a_line", settled_meanwhile)
    with pytest.raises(Conflict, match="changed while canceling"):
        void(live, intent)
    intent.refresh_from_db()
    assert (intent.status, intent.canceled_at) == ("succeeded", None)


def test_a_t0_payment_is_voidable_until_its_windows_cutoff(live: dict[str, Any]) -> None:
    merchant = live["merchant"]
    merchant.settlement_cycle = "t0"
    merchant.save()
    intent = paid(live)
    deadline = settlement.t0_cutoff_after(intent.captured_at)
    assert settlement.void_deadline(intent) == deadline
    assert intent.captured_at < deadline <= intent.captured_at + dt.timedelta(hours=16)
    assert settlement.t0_cutoff_after(at(TUE, 9, 59)) == at(TUE, 10)
    assert settlement.t0_cutoff_after(at(TUE, 10, 0)) == at(TUE, 14)
    assert settlement.t0_cutoff_after(at(TUE, 18, 0)) == at(WED, 10)
    PaymentIntent.objects.filter(pk=intent.pk).update(captured_at=at(TUE, 9))  # its window closed long ago
    with pytest.raises(Conflict, match="refund it instead"):
        void(live, intent)
    PaymentIntent.objects.filter(pk=intent.pk).update(captured_at=timezone.now())
    assert void(live, intent).status == "canceled"


def test_a_voided_payment_is_never_settled(live: dict[str, Any]) -> None:
    kept, voided = paid(live, 1_000), paid(live, 2_000)
    assert void(live, voided).status == "canceled"
    PaymentIntent.objects.filter(pk__in=[kept.pk, voided.pk]).update(business_date=MON, created_at=at(MON))
    settle(MON)
    assert list(Line.objects.values_list("kind", "payment_id")) == [("payment", kept.pk)]
    assert batch_of(live["merchant"], MON.isoformat()).gross == 1_000


# --- what refunds carry for settlement ------------------------------------------------------------------------------


def test_a_refund_is_stamped_with_its_business_date_and_the_promotion_cost_it_returned(
    points_world: dict[str, Any],
) -> None:
    world = points_world
    cofunded = make_promotion(
        merchant=world["merchant"],
        kind=Promotion.Kind.POINTS_MULTIPLIER,
        amount_off=None,
        multiplier=Decimal("3"),
        cofunder=world["issuer"],
        cofunder_share=Decimal("0.25"),
        cofunding=Promotion.Cofunding.APPROVED,
    )
    intent = services.payment_create(
        merchant=world["merchant"], cardholder=world["card"].cardholder, card=world["card"], amount=10_001,
        currency="CNY", idempotency_key=f"settle-{next(_serial)}", confirm=True,
    )  # fmt: skip
    use = PromotionUse.objects.get(payment=intent.public_id, promotion=cofunded)
    assert (use.cost, use.cofunder_cost) == (200, 50)
    returned = []
    for amount in (3_333, 3_333, 3_335):
        made = services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, amount=amount,
            idempotency_key=f"settle-{next(_serial)}",
        )  # fmt: skip
        assert made.business_date == intent.business_date  # the same day, before the channel's cut-off
        returned.append(made.promotion_cost_returned)
    # Cumulative, the merchant's part of each return: 66 − floor(50 × 66 / 200) = 50, then 133 − 33 = 100, then
    # the rest: exactly the 150 its payment line charged.
    assert returned == [50, 50, 50]


def test_refunds_take_back_the_cofunding_banks_part_of_a_discount_cumulatively(
    points_world: dict[str, Any],
) -> None:
    world = points_world
    cofunded = make_promotion(
        merchant=world["merchant"],
        cofunder=world["issuer"],
        cofunder_share=Decimal("0.5"),
        cofunding=Promotion.Cofunding.APPROVED,
    )
    intent = services.payment_create(
        merchant=world["merchant"], cardholder=world["card"].cardholder, card=world["card"], amount=10_001,
        currency="CNY", idempotency_key=f"settle-{next(_serial)}", confirm=True,
    )  # fmt: skip
    use = PromotionUse.objects.get(payment=intent.public_id, promotion=cofunded)
    assert (use.cost, use.cofunder_cost, intent.amount_captured) == (1_000, 500, 9_001)
    taken_back = []
    for amount in (3_000, 3_000, 3_001):
        made = services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, amount=amount,
            idempotency_key=f"settle-{next(_serial)}",
        )  # fmt: skip
        assert made.promotion_cost_returned == 0  # a discount charges the merchant nothing to give back
        taken_back.append(made.cofunding_returned)
    # Cost returned so far: floor(1,000 × 3,000 / 9,001) = 333, then 666, then 1,000; the bank's part of it
    # floor(500 × returned / 1,000): 166, 333, 500. Each refund takes back the step: exactly the 500 credited.
    assert taken_back == [166, 167, 167]
    assert list(Refund.objects.filter(intent=intent).values_list("cofunding_returned", flat=True).order_by("id")) == [
        166,
        167,
        167,
    ]


def test_old_refunds_get_their_business_date_from_their_completion(world: dict[str, Any]) -> None:
    from importlib import import_module

    from django.apps import apps
    from django.db import connection

    intent = pay(world, 10_000, D(2026, 9, 30))
    late = refund(intent, 1_000, D(2026, 9, 30), completed_at=at(D(2026, 9, 30), 23, 30))
    early = refund(intent, 1_000, D(2026, 9, 30), completed_at=at(D(2026, 10, 10), 8))
    Refund.objects.filter(pk__in=[late.pk, early.pk]).update(business_date=None)
    migration = import_module("payments.migrations.0031_settlement_data")
    with connection.schema_editor() as editor:
        migration.refund_business_dates(apps, editor)
    late.refresh_from_db()
    early.refresh_from_db()
    assert late.business_date == D(2026, 10, 8)  # past the cut-off, into National Day: the next working day
    assert early.business_date == D(2026, 10, 10)  # a worked Saturday (调休)
