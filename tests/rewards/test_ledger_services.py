"""The ledger's services: exact balances, lots, holds, exchange, reversals, debts, expiry, adjustments, idempotency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.approvals import approval_approve, approval_reject
from core.errors import Conflict, IdempotencyConflict, InsufficientFunds, PermissionDenied, ValidationFailed
from core.models import AuditLog
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Account, Entry, Hold, LedgerTransaction, Lot, LotMovement
from tests.factories import CardholderFactory, PointsProgramFactory, StaffFactory, bank_operator, card_at

pytestmark = pytest.mark.django_db


def balance(holder, program) -> tuple[int, int]:
    wallet = s.wallet_account(holder.pk, program)
    wallet.refresh_from_db()
    return wallet.posted, wallet.held


def debt(holder, program) -> int:
    return s.debt_account(holder.pk, program).posted


def assert_clean() -> None:
    report = ledger_verify(seals=False)
    assert report.violations == []


@pytest.fixture
def program():
    return PointsProgramFactory(expiry_policy="months_after", expiry_period=12)


@pytest.fixture
def holder():
    return CardholderFactory()


def test_earn_forms_a_lot_with_the_programs_expiry(program, holder) -> None:
    txn = s.points_earn(
        cardholder_id=holder.pk, program=program, amount=1200, idempotency_key="e1", earned_on=dt.date(2026, 1, 31)
    )
    assert balance(holder, program) == (1200, 0)
    lot = Lot.objects.get(earned_by=txn)
    assert (lot.amount, lot.remaining, lot.expires_on) == (1200, 1200, dt.date(2027, 1, 31))
    amounts = sorted(Entry.objects.filter(transaction=txn).values_list("amount", flat=True))
    assert amounts == [-1200, 1200]
    end_of_year = PointsProgramFactory(expiry_policy="end_of_year", expiry_period=2)
    s.points_earn(
        cardholder_id=holder.pk, program=end_of_year, amount=5, idempotency_key="e2", earned_on=dt.date(2026, 3, 1)
    )
    assert Lot.objects.get(program=end_of_year).expires_on == dt.date(2028, 12, 31)
    assert_clean()


def test_expiry_month_end_clamps() -> None:
    program = PointsProgramFactory(expiry_policy="months_after", expiry_period=1)
    assert s.lot_expiry(program, dt.date(2026, 1, 31)) == dt.date(2026, 2, 28)


def test_replay_returns_the_first_result_and_conflict_on_other_parameters(program, holder) -> None:
    first = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="same")
    again = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="same")
    assert again.pk == first.pk
    assert balance(holder, program) == (100, 0)
    with pytest.raises(IdempotencyConflict):
        s.points_earn(cardholder_id=holder.pk, program=program, amount=101, idempotency_key="same")
    assert LedgerTransaction.objects.count() == 1


def test_redeem_consumes_soonest_expiry_first_and_records_lots(program, holder) -> None:
    late = s.points_earn(
        cardholder_id=holder.pk, program=program, amount=100, idempotency_key="late", earned_on=dt.date(2026, 6, 1)
    )
    early = s.points_earn(
        cardholder_id=holder.pk, program=program, amount=100, idempotency_key="early", earned_on=dt.date(2026, 1, 1)
    )
    spend = s.points_redeem(cardholder_id=holder.pk, program=program, amount=150, idempotency_key="r")
    moves = dict(LotMovement.objects.filter(transaction=spend).values_list("lot__earned_by_id", "amount"))
    assert moves == {early.pk: -100, late.pk: -50}
    assert balance(holder, program) == (50, 0)
    with pytest.raises(InsufficientFunds):
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=51, idempotency_key="r2")
    assert not LedgerTransaction.objects.filter(idempotency_key="r2").exists()
    assert_clean()


def test_bad_amounts_are_refused_before_writing(program, holder) -> None:
    for bad in (0, -5, True):
        with pytest.raises(ValidationFailed):
            s.points_earn(cardholder_id=holder.pk, program=program, amount=bad, idempotency_key=f"bad{bad}")
    assert LedgerTransaction.objects.count() == 0


def test_hold_post_partial_releases_the_rest(program, holder) -> None:
    s.points_earn(cardholder_id=holder.pk, program=program, amount=300, idempotency_key="e")
    hold = s.hold_create(cardholder_id=holder.pk, program=program, amount=200, idempotency_key="h")
    assert balance(holder, program) == (300, 200)
    with pytest.raises(InsufficientFunds):
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=101, idempotency_key="r")
    txn = s.hold_post(hold_id=hold.pk, amount=120, idempotency_key="hp")
    assert balance(holder, program) == (180, 0)
    hold.refresh_from_db()
    assert (hold.status, hold.posted_amount, hold.transaction_id) == ("posted", 120, txn.pk)
    assert s.hold_post(hold_id=hold.pk, amount=120, idempotency_key="hp").pk == txn.pk
    with pytest.raises(Conflict):
        s.hold_void(hold_id=hold.pk)
    with pytest.raises(Conflict):
        s.hold_post(hold_id=hold.pk, amount=10, idempotency_key="hp-again")
    assert_clean()


def test_hold_void_and_timeout(program, holder) -> None:
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e")
    voided = s.hold_create(cardholder_id=holder.pk, program=program, amount=40, idempotency_key="h1")
    s.hold_void(hold_id=voided.pk)
    s.hold_void(hold_id=voided.pk)  # idempotent
    past = s.hold_create(
        cardholder_id=holder.pk,
        program=program,
        amount=30,
        idempotency_key="h2",
        expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    s.hold_create(cardholder_id=holder.pk, program=program, amount=20, idempotency_key="h3")
    assert s.holds_expire() == 1
    assert Hold.objects.get(pk=past.pk).status == "expired"
    assert balance(holder, program) == (100, 20)
    assert_clean()


def test_exchange_rate_fee_and_obligation(holder) -> None:
    src = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    dst = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    s.points_earn(cardholder_id=holder.pk, program=src, amount=1000, idempotency_key="e")
    txn = s.points_exchange(cardholder_id=holder.pk, from_program=src, to_program=dst, amount=1000, idempotency_key="x")
    # 1000 × 0.005 × 0.98 / 0.003 = 1633.33 → 1633 points; bank A owes 5.0000 CNY, bank B gets 1633 × 0.003 = 4.899
    assert txn.rate == Decimal("1.6333333333")
    assert balance(holder, src) == (0, 0)
    assert balance(holder, dst) == (1633, 0)
    cny = {(a.owner_kind, a.owner_id): a.posted for a in Account.objects.filter(unit="CNY")}
    assert cny == {("bank", src.bank_id): -50000, ("bank", dst.bank_id): 48990, ("alliance", 0): 1010}
    with pytest.raises(ValidationFailed):
        s.points_exchange(cardholder_id=holder.pk, from_program=dst, to_program=src, amount=99, idempotency_key="y")
    assert_clean()


def test_funded_earn_posts_a_cny_obligation(program, holder) -> None:
    funder = PointsProgramFactory()
    s.points_earn(
        cardholder_id=holder.pk,
        program=program,
        amount=333,
        idempotency_key="promo",
        source=s.EarnSource.PROMOTION,
        funded_by=s.Party("merchant", 77),
    )
    merchant = Account.objects.get(owner_kind="merchant", owner_id=77)
    issuer = Account.objects.get(owner_kind="bank", owner_id=program.bank_id, unit="CNY")
    assert (merchant.posted, issuer.posted) == (-16650, 16650)  # 333 × 0.005 = 1.6650 CNY
    s.points_redeem(
        cardholder_id=holder.pk,
        program=program,
        amount=100,
        idempotency_key="benefit",
        pays_to=s.Party("bank", funder.bank_id),
    )
    issuer.refresh_from_db()
    assert issuer.posted == 16650 - 5000
    assert_clean()


def test_partial_reversals_are_cumulative_and_bounded(program, holder) -> None:
    earn = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e")
    # three refunds of 1/3 of the captured total each: floor(100×1/3)=33, floor(100×2/3)=66, floor(100×3/3)=100
    first = s.transaction_reverse(transaction_id=earn.pk, refunded_total=1, captured_total=3, idempotency_key="r1")
    second = s.transaction_reverse(transaction_id=earn.pk, refunded_total=2, captured_total=3, idempotency_key="r2")
    third = s.transaction_reverse(transaction_id=earn.pk, refunded_total=3, captured_total=3, idempotency_key="r3")
    assert [first.points, second.points, third.points] == [33, 33, 34]
    assert (
        s.transaction_reverse(transaction_id=earn.pk, refunded_total=3, captured_total=3, idempotency_key="r4") is None
    )
    with pytest.raises(ValidationFailed):
        s.transaction_reverse(transaction_id=earn.pk, amount=1, idempotency_key="r5")
    assert balance(holder, program) == (0, 0)
    assert_clean()


def test_reversing_spent_earn_creates_debt_paid_by_later_earnings(program, holder) -> None:
    earn = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e")
    s.points_redeem(cardholder_id=holder.pk, program=program, amount=80, idempotency_key="r")
    s.transaction_reverse(transaction_id=earn.pk, amount=100, idempotency_key="rev")
    assert balance(holder, program) == (0, 0)
    assert debt(holder, program) == -80
    later = s.points_earn(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="e2")
    assert debt(holder, program) == -30
    assert not Lot.objects.filter(earned_by=later).exists()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="e3")
    assert debt(holder, program) == 0
    assert balance(holder, program) == (20, 0)
    assert_clean()


def test_reversing_a_spend_returns_points_to_their_lots_and_expired_ones_expire(program, holder, monkeypatch) -> None:
    old = s.points_earn(
        cardholder_id=holder.pk, program=program, amount=60, idempotency_key="old", earned_on=dt.date(2024, 1, 1)
    )
    new = s.points_earn(cardholder_id=holder.pk, program=program, amount=60, idempotency_key="new")
    with monkeypatch.context() as m:
        m.setattr("rewards.services.expiry.today", lambda: dt.date(2024, 12, 31))  # the old lot's last valid day
        spend = s.points_redeem(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="spend")
    reversal = s.transaction_reverse(transaction_id=spend.pk, amount=100, idempotency_key="undo")
    assert Lot.objects.get(earned_by=new).remaining == 60
    assert Lot.objects.get(earned_by=old).remaining == 0  # expired 2025-01-01: returned points expire at once
    assert reversal.metadata["expired_lots"] == {str(Lot.objects.get(earned_by=old).pk): 60}
    assert balance(holder, program) == (60, 0)
    breakage = Account.objects.filter(purpose="breakage").get()
    assert breakage.posted == 60
    assert_clean()


def test_expiry_job_one_transaction_per_wallet_and_respects_holds(program, holder, monkeypatch) -> None:
    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=70, idempotency_key="a", earned_on=dt.date(2024, 1, 1)
    )
    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=30, idempotency_key="b", earned_on=dt.date(2024, 2, 1)
    )
    s.points_earn(cardholder_id=holder.pk, program=program, amount=40, idempotency_key="c")
    with monkeypatch.context() as m:  # the hold is taken while every lot is valid
        m.setattr("rewards.services.expiry.today", lambda: dt.date(2024, 6, 1))
        s.hold_create(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="h")
    counts = s.lots_expire(on=dt.date(2025, 6, 1))
    # 100 overdue, of which the 50 held (holds take the soonest lots) wait for their hold; the 40 valid stay
    assert counts == {"accounts": 1, "points": 50}
    assert LedgerTransaction.objects.filter(kind="expire").count() == 1
    assert balance(holder, program) == (90, 50)
    assert s.lots_expire(on=dt.date(2025, 6, 1)) == {"accounts": 0, "points": 0}
    assert_clean()


def test_points_past_their_date_are_not_spendable_before_the_job_runs(program, holder) -> None:
    overdue = s.points_earn(
        cardholder_id=holder.pk, program=program, amount=70, idempotency_key="old", earned_on=dt.date(2024, 1, 1)
    )
    fresh = s.points_earn(cardholder_id=holder.pk, program=program, amount=40, idempotency_key="new")
    assert balance(holder, program) == (110, 0)  # the daily job has not run yet
    with pytest.raises(InsufficientFunds):
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="too-much")
    assert not LedgerTransaction.objects.filter(idempotency_key="too-much").exists()
    spend = s.points_redeem(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="ok")
    expiry = LedgerTransaction.objects.get(kind="expire")
    assert expiry.points == 70
    assert Lot.objects.get(earned_by=overdue).remaining == 0
    assert list(LotMovement.objects.filter(transaction=spend).values_list("lot__earned_by", "amount")) == [
        (fresh.pk, -30)
    ]
    assert Account.objects.get(purpose="breakage").posted == 70
    assert balance(holder, program) == (10, 0)
    with pytest.raises(InsufficientFunds):
        s.hold_create(cardholder_id=holder.pk, program=program, amount=11, idempotency_key="h")
    assert_clean()


def test_a_hold_expires_overdue_lots_first_and_a_later_expiry_the_same_day_posts_again(
    program, holder, monkeypatch
) -> None:
    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=50, idempotency_key="a", earned_on=dt.date(2024, 1, 1)
    )
    with monkeypatch.context() as m:
        m.setattr("rewards.services.expiry.today", lambda: dt.date(2024, 6, 1))
        hold = s.hold_create(cardholder_id=holder.pk, program=program, amount=20, idempotency_key="h")
    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=30, idempotency_key="b", earned_on=dt.date(2024, 2, 1)
    )
    s.points_earn(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="c")
    s.hold_create(cardholder_id=holder.pk, program=program, amount=5, idempotency_key="h2")
    # 90 posted − 20 held: the 60 overdue points that are not held expire; the held 20 wait for their hold
    assert balance(holder, program) == (30, 25)
    s.hold_void(hold_id=hold.pk)
    with pytest.raises(InsufficientFunds):
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=11, idempotency_key="r")
    assert balance(holder, program) == (30, 5)  # a refused spend leaves nothing behind, its expiry included
    s.points_redeem(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="r")
    # the released 20 overdue points, less the 5 still held, expired in a second posting the same day
    assert balance(holder, program) == (5, 5)
    assert LedgerTransaction.objects.filter(kind="expire").count() == 2
    assert s.lots_expire() == {"accounts": 0, "points": 0}
    assert_clean()


def test_adjustment_needs_a_second_operator_and_is_audited(program, holder) -> None:
    maker, checker = bank_operator(program.bank), bank_operator(program.bank)
    card_at(holder, program.bank)
    request = s.adjustment_request(
        cardholder_id=holder.pk, program=program, amount=25, reason="missed promotion", requested_by=maker
    )
    assert balance(holder, program) == (0, 0)  # nothing posts until it is approved
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=maker)
    with pytest.raises(PermissionDenied):  # staff without the role may not check
        approval_approve(request_id=request.pk, checker=StaffFactory())
    approved = approval_approve(request_id=request.pk, checker=checker)
    txn = LedgerTransaction.objects.get(pk=approved.result_id)
    assert (approved.result_type, approved.checker) == ("rewards.ledgertransaction", checker)
    assert balance(holder, program) == (25, 0)
    assert txn.actor == checker
    assert (txn.metadata["requested_by"], txn.metadata["approved_by"]) == (maker.pk, checker.pk)
    # Approving again posts nothing more; nor may anyone reject it now.
    with pytest.raises(Conflict):
        approval_approve(request_id=request.pk, checker=checker)
    assert balance(holder, program) == (25, 0)
    with pytest.raises(Conflict):
        approval_reject(request_id=request.pk, checker=bank_operator(program.bank), reason="late")
    actions = list(
        AuditLog.objects.filter(object_type="core.approvalrequest", object_id=str(request.pk)).values_list(
            "action", flat=True
        )
    )
    assert sorted(actions) == ["approval.approve", "approval.request"]
    minus = s.adjustment_request(
        cardholder_id=holder.pk, program=program, amount=-10, reason="duplicate credit", requested_by=maker
    )
    approval_approve(request_id=minus.pk, checker=checker)
    assert balance(holder, program) == (15, 0)
    with pytest.raises(ValidationFailed):
        s.adjustment_request(cardholder_id=holder.pk, program=program, amount=5, reason=" ", requested_by=maker)
    assert_clean()


OPS = st.lists(
    st.tuples(st.sampled_from(["earn", "redeem", "hold", "post", "void", "reverse"]), st.integers(1, 300)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_posting_rules_hold_for_any_sequence(ops) -> None:
    program = PointsProgramFactory()
    holder = CardholderFactory()
    expected = 0
    holds: list[int] = []
    earns: list[int] = []
    for n, (op, amount) in enumerate(ops):
        key = f"p{program.pk}:{n}"
        posted, held = balance(holder, program)
        if op == "earn":
            earns.append(s.points_earn(cardholder_id=holder.pk, program=program, amount=amount, idempotency_key=key).pk)
            expected += amount
        elif op == "redeem":
            if amount > posted - held:
                with pytest.raises(InsufficientFunds):
                    s.points_redeem(cardholder_id=holder.pk, program=program, amount=amount, idempotency_key=key)
            else:
                s.points_redeem(cardholder_id=holder.pk, program=program, amount=amount, idempotency_key=key)
                expected -= amount
        elif op == "hold" and amount <= posted - held:
            holds.append(s.hold_create(cardholder_id=holder.pk, program=program, amount=amount, idempotency_key=key).pk)
        elif op in ("post", "void") and holds:
            hold = Hold.objects.get(pk=holds.pop())
            if op == "post":
                part = min(amount, hold.amount)
                s.hold_post(hold_id=hold.pk, amount=part, idempotency_key=key)
                expected -= part
            else:
                s.hold_void(hold_id=hold.pk)
        elif op == "reverse" and earns:
            s.transaction_reverse(transaction_id=earns.pop(), refunded_total=1, captured_total=1, idempotency_key=key)
        posted, held = balance(holder, program)
        assert 0 <= held <= posted
    total_entries = sum(
        Entry.objects.filter(  # by a subquery: on Citus entries join accounts on (account_id, spread) only
            account__in=Account.objects.filter(
                owner_id=holder.pk, purpose__in=["points", "debt"], unit=program.unit_code
            ).values("pk")
        ).values_list("amount", flat=True)
    )
    posted, _ = balance(holder, program)
    assert posted + debt(holder, program) == total_entries
    assert_clean()


def test_bulk_earn_one_transaction_pays_debts_first_and_replays(holder) -> None:
    a, b = PointsProgramFactory(), PointsProgramFactory()
    other = CardholderFactory()
    earn = s.points_earn(cardholder_id=holder.pk, program=a, amount=50, idempotency_key="e")
    s.points_redeem(cardholder_id=holder.pk, program=a, amount=50, idempotency_key="r")
    s.transaction_reverse(transaction_id=earn.pk, amount=50, idempotency_key="rev")  # debt of 50
    events = [
        s.EarnEvent(holder.pk, a.pk, 30),
        s.EarnEvent(holder.pk, a.pk, 40),
        s.EarnEvent(other.pk, a.pk, 5),
        s.EarnEvent(other.pk, b.pk, 7),
    ]
    txn = s.points_earn_bulk(events=events, idempotency_key="batch-1")
    assert debt(holder, a) == 0
    assert balance(holder, a) == (20, 0)
    assert balance(other, a) == (5, 0)
    assert balance(other, b) == (7, 0)
    assert Lot.objects.filter(earned_by=txn).count() == 3  # one per wallet: (holder, a), (other, a), (other, b)
    assert s.points_earn_bulk(events=events, idempotency_key="batch-1").pk == txn.pk
    with pytest.raises(IdempotencyConflict):
        s.points_earn_bulk(events=events[:1], idempotency_key="batch-1")
    assert_clean()


def test_reversing_an_exchange_restores_both_sides_and_the_obligation(holder) -> None:
    src = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    dst = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    s.points_earn(cardholder_id=holder.pk, program=src, amount=1000, idempotency_key="e")
    txn = s.points_exchange(cardholder_id=holder.pk, from_program=src, to_program=dst, amount=600, idempotency_key="x")
    s.transaction_reverse(transaction_id=txn.pk, amount=600, idempotency_key="whole")
    assert balance(holder, src) == (1000, 0)
    assert balance(holder, dst) == (0, 0)
    assert set(Account.objects.filter(unit="CNY").values_list("posted", flat=True)) == {0}
    assert_clean()


def test_funded_earn_reversal_reverses_the_obligation_cumulatively(program, holder) -> None:
    earn = s.points_earn(
        cardholder_id=holder.pk,
        program=program,
        amount=333,
        idempotency_key="promo",
        source=s.EarnSource.PROMOTION,
        funded_by=s.Party("merchant", 5),
    )
    s.transaction_reverse(transaction_id=earn.pk, refunded_total=1, captured_total=3, idempotency_key="r1")
    merchant = Account.objects.get(owner_kind="merchant", owner_id=5)
    assert merchant.posted == -16650 + 16650 * 111 // 333  # 111 points reversed: floor(16650 × 111 / 333) = 5550
    s.transaction_reverse(transaction_id=earn.pk, refunded_total=3, captured_total=3, idempotency_key="r2")
    merchant.refresh_from_db()
    assert merchant.posted == 0
    assert_clean()


def test_reversing_a_posted_hold_returns_the_points(program, holder) -> None:
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e")
    hold = s.hold_create(cardholder_id=holder.pk, program=program, amount=80, idempotency_key="h")
    posted = s.hold_post(hold_id=hold.pk, idempotency_key="hp")
    s.transaction_reverse(transaction_id=posted.pk, amount=30, idempotency_key="rv")
    assert balance(holder, program) == (50, 0)
    assert_clean()


def test_deadlocks_are_retried_not_reported_as_shortfalls(monkeypatch) -> None:
    from types import SimpleNamespace

    from django.db import OperationalError

    # The test itself runs inside a transaction; retries happen only where the posting owns the outermost one.
    monkeypatch.setattr("rewards.services.posting.connection", SimpleNamespace(in_atomic_block=False))

    class Deadlock(Exception):
        pgcode = "40P01"

    calls = {"n": 0}

    @s.retry_on_conflict
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OperationalError("deadlock detected") from Deadlock()
        return "posted"

    assert flaky() == "posted"
    assert calls["n"] == 3

    @s.retry_on_conflict
    def broken() -> None:
        raise OperationalError("connection refused")

    with pytest.raises(OperationalError):
        broken()


def test_jobs_run_through_job_run(program, holder, monkeypatch) -> None:
    from core.models import JobRun
    from rewards import tasks

    s.points_earn(
        cardholder_id=holder.pk, program=program, amount=10, idempotency_key="a", earned_on=dt.date(2020, 1, 1)
    )
    with monkeypatch.context() as m:
        m.setattr("rewards.services.expiry.today", lambda: dt.date(2020, 1, 1))
        s.hold_create(
            cardholder_id=holder.pk,
            program=program,
            amount=5,
            idempotency_key="h",
            expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        )
    assert tasks.holds_expire.delay().get() == {"expired": 1}
    assert tasks.lots_expire.delay().get() == {"accounts": 1, "points": 10}
    assert balance(holder, program) == (0, 0)
    jobs = dict(JobRun.objects.values_list("job", "status"))
    assert jobs == {"rewards.holds_expire": "succeeded", "rewards.lots_expire": "succeeded"}
