"""The ledger's races, forced: a second connection holds a row lock (a real posting, its transaction left open) while
the operation under test waits for it, so each interleaving happens every run, without sleeps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Hold, LedgerTransaction, Lot
from tests.concurrency import Background, wait_for_lock_waiters
from tests.factories import CardholderFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db(transaction=True)

LONG_AGO = dt.date(2020, 1, 1)  # a lot earned then is past its last valid day (end of year + 1) today


def _wallet(holder: Any, program: Any) -> tuple[int, int]:
    wallet = s.wallet_account(holder.pk, program)
    return wallet.posted, wallet.held


def test_expiry_waiting_for_a_capture_never_takes_held_points() -> None:
    """An overdue lot of 100, a valid lot of 100, holds of 30 and 50. The expiry waits for the wallet's lock while the
    30 hold is captured from the overdue lot: it must then expire 20 (100 − 30 captured − 50 still held), not 50."""
    program, holder = PointsProgramFactory(expiry_policy="months_after", expiry_period=1), CardholderFactory()
    today = s.today()
    old_day = today - dt.timedelta(days=20)  # valid for about ten more days: overdue on the expiry's day below
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="old", earned_on=old_day)
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="new", earned_on=today)
    expiry_day = s.lot_expiry(program, old_day) + dt.timedelta(days=1)
    assert expiry_day <= s.lot_expiry(program, today)
    thirty = s.hold_create(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="h30")
    s.hold_create(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="h50")
    assert _wallet(holder, program) == (200, 80)

    capture = Background(lambda: s.hold_post(hold_id=thirty.pk, idempotency_key="capture"), hold_open=True)
    expiry = Background(lambda: s.lots_expire(on=expiry_day))
    wait_for_lock_waiters(1)  # the expiry waits for the wallet the capture holds
    capture.release()
    capture.result()
    assert expiry.result() == {"accounts": 1, "points": 20}

    assert _wallet(holder, program) == (150, 50)
    old, new = Lot.objects.filter(account__owner_id=holder.pk).order_by("expires_on")
    assert (old.remaining, new.remaining) == (50, 100)  # the 50 still held stay in the overdue lot; valid untouched
    assert ledger_verify(seals=False).violations == []


def test_hold_sweep_skips_a_hold_captured_meanwhile_and_carries_on() -> None:
    """The sweep finds two holds past their time; one is being captured (its wallet locked) as the sweep reaches it.
    The sweep waits, skips the captured hold, expires the other, and does not fail."""
    program = PointsProgramFactory()
    holders = [CardholderFactory(), CardholderFactory()]
    holds = []
    for holder in holders:
        s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key=f"seed{holder.pk}")
        holds.append(
            s.hold_create(
                cardholder_id=holder.pk,
                program=program,
                amount=40,
                idempotency_key=f"h{holder.pk}",
                expires_at=timezone.now() + dt.timedelta(minutes=1),
            )
        )
    captured, other = holds
    capture = Background(lambda: s.hold_post(hold_id=captured.pk, idempotency_key="capture"), hold_open=True)
    sweep = Background(lambda: s.holds_expire(now=timezone.now() + dt.timedelta(minutes=5)))
    wait_for_lock_waiters(1)
    capture.release()
    capture.result()
    assert sweep.result() == 1

    assert Hold.objects.get(pk=captured.pk).status == Hold.Status.POSTED
    assert Hold.objects.get(pk=other.pk).status == Hold.Status.EXPIRED
    assert _wallet(holders[0], program) == (60, 0)
    assert _wallet(holders[1], program) == (100, 0)
    assert ledger_verify(seals=False).violations == []


def test_a_hold_past_its_time_is_refused_at_capture() -> None:
    from core.errors import Conflict

    program, holder = PointsProgramFactory(), CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="seed")
    hold = s.hold_create(
        cardholder_id=holder.pk,
        program=program,
        amount=40,
        idempotency_key="h",
        expires_at=timezone.now() - dt.timedelta(seconds=1),
    )
    with pytest.raises(Conflict) as refused:
        s.hold_post(hold_id=hold.pk, idempotency_key="late")
    assert refused.value.code == "hold_expired"
    assert not LedgerTransaction.objects.filter(kind="hold_post").exists()
    assert s.holds_expire() == 1
    assert _wallet(holder, program) == (100, 0)
    assert ledger_verify(seals=False).violations == []


def test_a_replayed_redeem_posts_nothing_even_with_an_overdue_lot() -> None:
    program, holder = PointsProgramFactory(expiry_policy="end_of_year", expiry_period=1), CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="seed")
    first = s.points_redeem(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="r")
    s.points_earn(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="old", earned_on=LONG_AGO)
    count = LedgerTransaction.objects.count()
    again = s.points_redeem(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="r")
    assert again.pk == first.pk
    assert LedgerTransaction.objects.count() == count  # no expiry posted along the way
    assert _wallet(holder, program) == (120, 0)


def test_overlapping_sealers_never_fork_the_chain() -> None:
    """A sealer that waited for another must follow the seal the other made, not the head it saw before waiting."""
    from rewards.models import Seal
    from rewards.sealing import seal_pending

    program, holder = PointsProgramFactory(), CardholderFactory()
    for i in range(3):
        s.points_earn(cardholder_id=holder.pk, program=program, amount=10 + i, idempotency_key=f"e{i}")
    assert seal_pending(batch_size=1, max_seals=1) == 1  # a head to extend

    first = Background(lambda: seal_pending(batch_size=1, max_seals=1), hold_open=True)
    second = Background(lambda: seal_pending(batch_size=1))
    wait_for_lock_waiters(1)  # the second sealer waits for the first
    first.release()
    assert first.result() == 1
    assert second.result() == 1

    seals = list(Seal.objects.order_by("id"))
    assert [seal.transaction_count for seal in seals] == [1, 1, 1]
    assert [seal.previous_hash for seal in seals[1:]] == [seal.hash for seal in seals[:-1]]
    assert ledger_verify().violations == []
