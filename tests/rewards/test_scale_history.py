"""bench/scale.py's ledger history, seeded by SQL: consistent enough that ledger_check passes on it and the services
keep posting on the wallets it touched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Account, Entry, LedgerTransaction, Lot, LotMovement
from tests.factories import CardholderFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db

BENCH = str(Path(__file__).resolve().parents[2] / "bench")


@pytest.fixture
def scale():  # type: ignore[no-untyped-def]
    if BENCH not in sys.path:
        sys.path.append(BENCH)
    import scale

    return scale


def test_history_is_consistent_and_reaches_the_posting_wallets(scale) -> None:
    programs = [PointsProgramFactory() for _ in range(3)]
    holders = [CardholderFactory() for _ in range(4)]
    for n, holder in enumerate(holders):
        s.points_earn(cardholder_id=holder.pk, program=programs[n % 3], amount=1_000, idempotency_key=f"seed:{n}")
    wallets = [s.wallet_account(h.pk, programs[n % 3]) for n, h in enumerate(holders)]
    before = {w.pk: w.posted for w in wallets}

    added = scale.grow_history(2_000, programs, [w.pk for w in wallets], partitioned=False)

    per_wallet = scale.ENTRIES_PER_WALLET // 2  # a wallet's side of its history
    assert added == 42 * scale.ENTRIES_PER_WALLET  # 42 wallets of 48 entries take 8 entries to 2,000 or more
    assert Entry.objects.count() == 8 + added
    for wallet in wallets:
        assert Entry.objects.filter(account=wallet).count() == 1 + per_wallet
        assert Account.objects.get(pk=wallet.pk).posted == before[wallet.pk]  # every earn spent whole
    history = LedgerTransaction.objects.filter(idempotency_key__startswith="history:")
    assert history.count() == added // 2
    assert set(history.values_list("kind", flat=True)) == {"earn", "spend"}
    assert Lot.objects.filter(earned_by__in=history, remaining=0).count() == added // 4
    assert LotMovement.objects.filter(transaction__in=history).count() == added // 4
    synthetic = Account.objects.filter(owner_id__gt=scale.SYNTHETIC_OWNERS, purpose="points")
    assert synthetic.count() == 42 - len(wallets)
    assert set(synthetic.values_list("program_id", flat=True)) == {p.pk for p in programs}
    report = ledger_verify(seals=False)
    assert report.violations == []

    # A second step adds new wallets only, and the services go on posting on the history's accounts.
    more = scale.grow_history(4_000, programs, [], partitioned=False)
    assert 2_000 <= more < 2_000 + scale.ENTRIES_PER_WALLET
    s.points_redeem(cardholder_id=holders[0].pk, program=programs[0], amount=700, idempotency_key="after")
    s.points_earn(cardholder_id=holders[1].pk, program=programs[1], amount=5, idempotency_key="after-earn")
    assert ledger_verify(seals=False).violations == []


def test_nothing_is_added_past_the_target(scale) -> None:
    program = PointsProgramFactory()
    assert scale.grow_history(0, [program], [], partitioned=False) == 0
    assert not Entry.objects.exists()
