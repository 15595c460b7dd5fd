"""The demo step gives active cardholders history — earnings in bulk, then a redemption, a hold and an exchange —
idempotently, and does nothing without cardholders."""

from __future__ import annotations

import pytest

from members.models import Card
from rewards.checks import ledger_verify
from rewards.demo import seed_rewards
from rewards.models import Hold, LedgerTransaction, Lot
from tests.factories import CardholderFactory, PointsProgramFactory


class Ctx:
    scale = "small"


@pytest.mark.django_db
def test_seed_rewards_is_idempotent() -> None:
    seed_rewards(Ctx())
    assert LedgerTransaction.objects.count() == 0
    program, other = PointsProgramFactory(), PointsProgramFactory()
    holder = CardholderFactory()
    from members.models import CardProduct

    product = CardProduct.objects.create(bank=program.bank, code="GOLD", name="Gold", kind="credit")
    Card.objects.create(
        cardholder=holder,
        bank=program.bank,
        product=product,
        token="tok_demo_1",
        bin="62000000",
        last4="0001",
        fingerprint="f" * 64,
        expiry_month=12,
        expiry_year=2030,
        status="active",
    )
    seed_rewards(Ctx())
    kinds = sorted(LedgerTransaction.objects.values_list("kind", flat=True))
    assert kinds == ["earn_batch", "earn_batch", "earn_batch", "exchange", "spend"]
    lots = Lot.objects.filter(earned_by__kind="earn_batch").values_list("amount", flat=True)
    assert sorted(lots) == [800, 1200, 3000]  # three ages, a lot each
    assert Hold.objects.count() == 1
    seed_rewards(Ctx())
    assert LedgerTransaction.objects.count() == 5
    assert ledger_verify(seals=False).violations == []
    assert other.pk


@pytest.mark.django_db
def test_a_holder_who_gains_a_programme_earns_in_it_and_nobody_earns_twice() -> None:
    from members.models import CardProduct

    first, second = PointsProgramFactory(), PointsProgramFactory()
    holder = CardholderFactory()
    for n, program in enumerate((first, second)):
        product = CardProduct.objects.create(bank=program.bank, code=f"P{n}", name="Product", kind="credit")
        Card.objects.create(
            cardholder=holder,
            bank=program.bank,
            product=product,
            token=f"tok_demo_{n}",
            bin="62000000",
            last4=f"000{n}",
            fingerprint=str(n) * 64,
            expiry_month=12,
            expiry_year=2030,
            status="active" if n == 0 else "frozen",
        )
    earned = Lot.objects.filter(earned_by__kind="earn_batch")
    seed_rewards(Ctx())
    assert (earned.filter(program=first).count(), earned.filter(program=second).count()) == (3, 0)
    Card.objects.filter(bank=second.bank).update(status="active")
    seed_rewards(Ctx())
    assert (earned.filter(program=first).count(), earned.filter(program=second).count()) == (3, 3)
    assert LedgerTransaction.objects.filter(kind="earn_batch").count() == 6
    assert ledger_verify(seals=False).violations == []
