"""Reversing an exchange, wholly or in part: source points back to their lots, target points taken back (a debt if
spent), the inter-bank obligation and the alliance fee handed back, all by the cumulative rule and without drift."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import pytest
from django.db.models import Q, Sum
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ValidationFailed
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Account, Entry, LedgerTransaction, Lot
from tests.factories import CardholderFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db


def lapsing_lot_dates(program) -> tuple[dt.date, dt.date]:  # type: ignore[no-untyped-def]
    """(earned on, last valid day) of a lot that was valid a month ago and has lapsed since."""
    earned_on = s.today() - dt.timedelta(days=400)
    return earned_on, s.lot_expiry(program, earned_on)


def posted(account: Account) -> int:
    account.refresh_from_db()
    return account.posted


def net(account: Account, exchange: LedgerTransaction) -> int:
    """What the exchange and its reversals did to `account` (the alliance's fee account is shared by every test)."""
    entries = Entry.objects.filter(Q(transaction=exchange) | Q(transaction__reverses=exchange), account=account)
    return entries.aggregate(total=Sum("amount"))["total"] or 0


def unit_sums(txn: LedgerTransaction) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for unit, amount in Entry.objects.filter(transaction=txn).values_list("unit", "amount"):
        sums[unit] += amount
    return dict(sums)


def assert_clean() -> None:
    assert ledger_verify(seals=False).violations == []


class Parties:
    """The accounts an exchange between `src` and `dst` touches."""

    def __init__(self, holder_id: int, src, dst) -> None:  # type: ignore[no-untyped-def]
        self.src_wallet = s.wallet_account(holder_id, src)
        self.dst_wallet = s.wallet_account(holder_id, dst)
        self.dst_debt = s.debt_account(holder_id, dst)
        self.breakage = s.bank_points_account(src, "breakage", holder_id)
        self.payer = s.clearing_account("bank", src.bank_id)
        self.payee = s.clearing_account("bank", dst.bank_id)
        self.fees = s.clearing_account("alliance", 0)


@pytest.fixture
def src():
    return PointsProgramFactory(point_value_cny=Decimal("0.005"), expiry_policy="months_after", expiry_period=12)


@pytest.fixture
def dst():
    return PointsProgramFactory(point_value_cny=Decimal("0.003"))


@pytest.fixture
def holder():
    return CardholderFactory()


def exchange_1000(holder, src, dst) -> LedgerTransaction:  # type: ignore[no-untyped-def]
    # 1000 × 0.005 × 0.98 / 0.003 → 1633 points; bank A owes 5.0000 CNY, bank B gets 4.8990, the alliance 0.1010
    s.points_earn(cardholder_id=holder.pk, program=src, amount=1000, idempotency_key=f"earn:{holder.pk}")
    return s.points_exchange(
        cardholder_id=holder.pk, from_program=src, to_program=dst, amount=1000, idempotency_key=f"x:{holder.pk}"
    )


def test_three_partial_reversals_hand_back_every_part_cumulatively(holder, src, dst) -> None:
    exchange = exchange_1000(holder, src, dst)
    p = Parties(holder.pk, src, dst)
    assert (exchange.metadata["payer_units"], exchange.metadata["payee_units"]) == (50000, 48990)
    assert (exchange.metadata["fee_units"], exchange.metadata["points_out"]) == (1010, 1633)
    steps = [
        s.transaction_reverse(
            transaction_id=exchange.pk, refunded_total=n, captured_total=3, idempotency_key=f"third{n}"
        )
        for n in (1, 2, 3)
    ]
    # everything follows the source points reversed so far: floor(1000 × n/3) = 333, 666, 1000
    assert [r.points for r in steps] == [333, 333, 334]
    # target points: floor(1633 × 333/1000) = 543, floor(1633 × 666/1000) = 1087, then the last 546 of 1633
    assert [r.metadata["points_out"] for r in steps] == [543, 544, 546]
    # bank B hands back floor(48990 × done/1000) = 16313, 32627, 48990 so far; the alliance floor(1010 × done/1000)
    # = 336, 672, 1010; bank A gets the sum of the two each time
    by_step = [
        {
            name: Entry.objects.filter(transaction=r, account=getattr(p, name)).aggregate(t=Sum("amount"))["t"]
            for name in ("payer", "payee", "fees")
        }
        for r in steps
    ]
    assert by_step == [
        {"payer": 16649, "payee": -16313, "fees": -336},
        {"payer": 16650, "payee": -16314, "fees": -336},
        {"payer": 16701, "payee": -16363, "fees": -338},
    ]
    for r in steps:
        assert set(unit_sums(r).values()) == {0}
    assert (posted(p.src_wallet), posted(p.dst_wallet), posted(p.dst_debt)) == (1000, 0, 0)
    assert (net(p.payer, exchange), net(p.payee, exchange), net(p.fees, exchange)) == (0, 0, 0)
    exchange.refresh_from_db()
    assert exchange.reversed_points == 1000
    assert Lot.objects.get(earned_by=exchange).remaining == 0
    assert_clean()


def test_partial_reversals_add_up_to_the_whole_reversal_exactly(src, dst) -> None:
    whole_holder, split_holder = CardholderFactory(), CardholderFactory()
    whole = exchange_1000(whole_holder, src, dst)
    split = exchange_1000(split_holder, src, dst)
    s.transaction_reverse(transaction_id=whole.pk, amount=1000, idempotency_key="whole")
    for n, part in enumerate([1, 7, 333, 2, 657]):
        s.transaction_reverse(transaction_id=split.pk, amount=part, idempotency_key=f"part{n}")

    units = {src.unit_code: "SRC", dst.unit_code: "DST"}

    def reversed_by_kind(exchange: LedgerTransaction) -> dict[tuple[str, str, str], int]:
        totals: dict[tuple[str, str, str], int] = defaultdict(int)
        rows = list(Entry.objects.filter(transaction__reverses=exchange).values_list("account_id", "unit", "amount"))
        # The accounts read apart: on Citus entries join accounts on (account_id, spread) only.
        kinds = {a.pk: (a.owner_kind, a.purpose) for a in Account.objects.filter(pk__in={pk for pk, _, _ in rows})}
        for account_id, unit, amount in rows:
            totals[(*kinds[account_id], units.get(unit, unit))] += amount
        return dict(totals)

    assert reversed_by_kind(split) == reversed_by_kind(whole)
    assert reversed_by_kind(whole) == {
        ("cardholder", "points", "SRC"): 1000,
        ("bank", "exchange", "SRC"): -1000,
        ("cardholder", "points", "DST"): -1633,
        ("bank", "issuance", "DST"): 1633,
        ("bank", "clearing", "CNY"): 50000 - 48990,
        ("alliance", "fees", "CNY"): -1010,
    }
    assert_clean()


def test_over_reversal_is_refused_and_writes_nothing(holder, src, dst) -> None:
    exchange = exchange_1000(holder, src, dst)
    s.transaction_reverse(transaction_id=exchange.pk, amount=600, idempotency_key="r1")
    before = (Entry.objects.count(), LedgerTransaction.objects.count())
    with translation.override("en"), pytest.raises(ValidationFailed) as refused:
        s.transaction_reverse(transaction_id=exchange.pk, amount=401, idempotency_key="r2")
    assert refused.value.message == "Only 400 points of this transaction are left to reverse."
    assert (Entry.objects.count(), LedgerTransaction.objects.count()) == before
    # a refund total at or below what is already reversed reverses nothing more
    assert (
        s.transaction_reverse(transaction_id=exchange.pk, refunded_total=3, captured_total=5, idempotency_key="r3")
        is None
    )
    last = s.transaction_reverse(transaction_id=exchange.pk, amount=400, idempotency_key="r4")
    assert last is not None
    assert s.transaction_reverse(transaction_id=exchange.pk, amount=400, idempotency_key="r4").pk == last.pk  # replay
    with pytest.raises(ValidationFailed):
        s.transaction_reverse(transaction_id=exchange.pk, amount=1, idempotency_key="r5")
    exchange.refresh_from_db()
    assert exchange.reversed_points == 1000
    assert_clean()


def test_target_points_already_spent_become_a_points_debt(holder, src, dst) -> None:
    exchange = exchange_1000(holder, src, dst)
    p = Parties(holder.pk, src, dst)
    s.points_redeem(cardholder_id=holder.pk, program=dst, amount=1500, idempotency_key="spend-target")
    half = s.transaction_reverse(transaction_id=exchange.pk, amount=500, idempotency_key="half")
    # floor(1633 / 2) = 816 taken back: the 133 left in the wallet, 683 as a debt
    assert half.metadata["points_out"] == 816
    assert (posted(p.dst_wallet), posted(p.dst_debt), posted(p.src_wallet)) == (0, -683, 500)
    s.transaction_reverse(transaction_id=exchange.pk, amount=500, idempotency_key="rest")
    assert (posted(p.dst_wallet), posted(p.dst_debt), posted(p.src_wallet)) == (0, -1500, 1000)
    s.points_earn(cardholder_id=holder.pk, program=dst, amount=1600, idempotency_key="later")
    assert (posted(p.dst_wallet), posted(p.dst_debt)) == (100, 0)
    assert_clean()


def test_source_points_whose_lot_expired_meanwhile_expire_at_once(holder, src, dst, monkeypatch) -> None:
    earned_on, last_valid_day = lapsing_lot_dates(src)
    old = s.points_earn(cardholder_id=holder.pk, program=src, amount=600, idempotency_key="old", earned_on=earned_on)
    fresh = s.points_earn(cardholder_id=holder.pk, program=src, amount=600, idempotency_key="fresh")
    with monkeypatch.context() as m:  # the exchange spends the old lot on its last valid day
        m.setattr("rewards.services.expiry.today", lambda: last_valid_day)
        m.setattr("rewards.services.exchange.today", lambda: last_valid_day)
        exchange = s.points_exchange(
            cardholder_id=holder.pk, from_program=src, to_program=dst, amount=1000, idempotency_key="x"
        )
    p = Parties(holder.pk, src, dst)
    old_lot, fresh_lot = Lot.objects.get(earned_by=old), Lot.objects.get(earned_by=fresh)
    assert (old_lot.remaining, fresh_lot.remaining) == (0, 200)
    first = s.transaction_reverse(transaction_id=exchange.pk, amount=300, idempotency_key="r1")
    second = s.transaction_reverse(transaction_id=exchange.pk, amount=300, idempotency_key="r2")
    third = s.transaction_reverse(transaction_id=exchange.pk, amount=400, idempotency_key="r3")
    # returned latest expiry first: 400 to the fresh lot, then 600 to the lapsed one, which expire at once
    assert "expired_lots" not in first.metadata
    assert second.metadata["expired_lots"] == {str(old_lot.pk): 200}
    assert third.metadata["expired_lots"] == {str(old_lot.pk): 400}
    old_lot.refresh_from_db()
    fresh_lot.refresh_from_db()
    assert (old_lot.remaining, fresh_lot.remaining) == (0, 600)
    assert (posted(p.src_wallet), posted(p.breakage)) == (600, 600)
    assert_clean()


def test_an_exchange_that_paid_off_a_debt_reverses_into_the_debt_again(holder, src, dst) -> None:
    earn = s.points_earn(cardholder_id=holder.pk, program=dst, amount=2000, idempotency_key="dst-earn")
    s.points_redeem(cardholder_id=holder.pk, program=dst, amount=2000, idempotency_key="dst-spend")
    s.transaction_reverse(transaction_id=earn.pk, amount=2000, idempotency_key="dst-unearn")  # a debt of 2000
    exchange = exchange_1000(holder, src, dst)  # the 1633 points all go to the debt: no entry on the wallet
    p = Parties(holder.pk, src, dst)
    assert (posted(p.dst_wallet), posted(p.dst_debt)) == (0, -367)
    s.transaction_reverse(transaction_id=exchange.pk, refunded_total=1, captured_total=2, idempotency_key="r1")
    assert (posted(p.dst_wallet), posted(p.dst_debt), posted(p.src_wallet)) == (0, -367 - 816, 500)
    s.transaction_reverse(transaction_id=exchange.pk, refunded_total=2, captured_total=2, idempotency_key="r2")
    assert (posted(p.dst_wallet), posted(p.dst_debt), posted(p.src_wallet)) == (0, -2000, 1000)
    assert_clean()


VALUES = [
    Decimal("0.005"),
    Decimal("0.003"),
    Decimal("0.0071"),
    Decimal("0.01"),
    Decimal("0.0013"),
    Decimal("0.000937"),
]
CAPTURED = 97
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("amount"), st.integers(1, 3000)),
        st.tuples(st.just("refund"), st.integers(0, CAPTURED)),  # the refund so far, of CAPTURED
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.tuples(st.sampled_from(VALUES), st.sampled_from(VALUES)),
    amount=st.integers(100, 3000),
    expired_share=st.integers(0, 100),
    spare=st.integers(0, 500),
    spent_share=st.integers(0, 100),
    steps=STEPS,
    finish=st.booleans(),
)
def test_any_sequence_of_partial_exchange_reversals_stays_exact(
    values, amount, expired_share, spare, spent_share, steps, finish
) -> None:
    src = PointsProgramFactory(point_value_cny=values[0], expiry_policy="months_after", expiry_period=12)
    dst = PointsProgramFactory(point_value_cny=values[1])
    holder = CardholderFactory()
    tag = f"p{src.pk}"
    old = amount * expired_share // 100  # points of a lot valid at the exchange that has lapsed since
    earned_on, last_valid_day = lapsing_lot_dates(src)
    if old:
        s.points_earn(
            cardholder_id=holder.pk, program=src, amount=old, idempotency_key=f"{tag}:old", earned_on=earned_on
        )
    if amount - old + spare:
        s.points_earn(cardholder_id=holder.pk, program=src, amount=amount - old + spare, idempotency_key=f"{tag}:fresh")
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr("rewards.services.expiry.today", lambda: last_valid_day)
            m.setattr("rewards.services.exchange.today", lambda: last_valid_day)
            exchange = s.points_exchange(
                cardholder_id=holder.pk, from_program=src, to_program=dst, amount=amount, idempotency_key=f"{tag}:x"
            )
    except ValidationFailed:
        return  # too few points at this rate: nothing to reverse
    p = Parties(holder.pk, src, dst)
    out, payer, payee, fee = (exchange.metadata[k] for k in ("points_out", "payer_units", "payee_units", "fee_units"))
    spent = out * spent_share // 100
    if spent:
        s.points_redeem(cardholder_id=holder.pk, program=dst, amount=spent, idempotency_key=f"{tag}:spend")
    from_fresh = amount - old  # the exchange spent the old lot first (soonest expiry)
    done = 0
    for n, step in enumerate([*steps, ("refund", CAPTURED)] if finish else steps):
        key = f"{tag}:r{n}"
        if step[0] == "amount":
            if done + step[1] > amount:
                with pytest.raises(ValidationFailed):
                    s.transaction_reverse(transaction_id=exchange.pk, amount=step[1], idempotency_key=key)
                assert not LedgerTransaction.objects.filter(idempotency_key=key).exists()
                continue
            reversal = s.transaction_reverse(transaction_id=exchange.pk, amount=step[1], idempotency_key=key)
            done += step[1]
        else:
            so_far = amount * step[1] // CAPTURED
            reversal = s.transaction_reverse(
                transaction_id=exchange.pk, refunded_total=step[1], captured_total=CAPTURED, idempotency_key=key
            )
            if so_far <= done:
                assert reversal is None
                continue
            done = so_far
        assert reversal is not None
        assert set(unit_sums(reversal).values()) == {0}
        exchange.refresh_from_db()
        assert exchange.reversed_points == done
        # every part of the exchange is reversed so far by floor(part × done / amount); the paying bank gets the sum
        payee_back, fee_back = payee * done // amount, fee * done // amount
        assert (net(p.payer, exchange), net(p.payee, exchange), net(p.fees, exchange)) == (
            -payer + payee_back + fee_back,
            payee - payee_back,
            fee - fee_back,
        )
        assert payee_back + fee_back <= payer * done // amount
        assert posted(p.dst_wallet) + posted(p.dst_debt) == out - spent - out * done // amount
        to_wallet = min(done, from_fresh)  # back to the fresh lot first, the rest expires at once
        assert (posted(p.src_wallet), posted(p.breakage)) == (spare + to_wallet, done - to_wallet)
    if done == amount:
        assert (net(p.payer, exchange), net(p.payee, exchange), net(p.fees, exchange)) == (0, 0, 0)
        assert posted(p.dst_wallet) + posted(p.dst_debt) == -spent
    assert_clean()
