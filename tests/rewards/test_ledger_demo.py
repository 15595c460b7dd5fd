"""The demo step gives active cardholders history, idempotently, and does nothing without cardholders."""

from __future__ import annotations

import pytest

from members.models import Card
from rewards.checks import ledger_verify
from rewards.demo import seed_rewards
from rewards.models import Hold, LedgerTransaction
from tests.factories import CardholderFactory, PointsProgramFactory


class Ctx:
    scale = "small"
    codes: list[tuple[str, str]] = []


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
    assert kinds == ["earn", "earn", "earn", "exchange", "spend"]
    assert Hold.objects.count() == 1
    seed_rewards(Ctx())
    assert LedgerTransaction.objects.count() == 5
    assert ledger_verify(seals=False).violations == []
    assert other.pk
