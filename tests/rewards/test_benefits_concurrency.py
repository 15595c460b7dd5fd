"""Benefits on PostgreSQL with real parallel connections: stock never overruns, a voucher is redeemed once."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import Conflict
from rewards import selectors
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Voucher
from tests.concurrency import run_parallel
from tests.factories import CardholderFactory, MerchantFactory, card_at, make_benefit

pytestmark = pytest.mark.django_db(transaction=True)

CONNECTIONS = 25


def test_a_hundred_parallel_redemptions_of_ten_left_issue_exactly_ten() -> None:
    benefit = make_benefit(price_points=100, stock_total=10)
    program = benefit.price_program
    cards = []
    for i in range(100):
        card = card_at(CardholderFactory(), program.bank)
        s.points_earn(cardholder_id=card.cardholder_id, program=program, amount=100, idempotency_key=f"seed{i}")
        cards.append(card)

    def redeem(i: int) -> Any:
        card = cards[i]
        try:
            return s.benefit_redeem(
                cardholder_id=card.cardholder_id,
                card_id=card.pk,
                benefit_id=benefit.pk,
                points={program.pk: 100},
                idempotency_key=f"r{i}",
            )
        except Exception as exc:
            return exc

    # 25 connections released together, each redeeming 4 times in a row: the database server shared by the test run
    # allows 100 connections in all, so 100 at once would be refused by the server, not by the code under test.
    per = 100 // CONNECTIONS
    batches = run_parallel(CONNECTIONS, lambda t: [redeem(t * per + n) for n in range(per)])
    results = [result for batch in batches for result in batch]
    issued = [r for r in results if isinstance(r, Voucher)]
    sold_out = [r for r in results if isinstance(r, Conflict) and r.code == "benefit_sold_out"]
    assert (len(issued), len(sold_out)) == (10, 90), [r for r in results if not isinstance(r, Voucher | Conflict)]
    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count) == (0, 10)
    assert Voucher.objects.count() == 10
    spent = sum(1 for card in cards if s.wallet_account(card.cardholder_id, program).posted == 0)
    assert spent == 10  # only the ten who got a voucher paid
    assert ledger_verify(seals=False).violations == []


def test_two_tills_racing_one_voucher_redeem_it_once() -> None:
    from merchants.models import Event

    merchant = MerchantFactory()
    benefit = make_benefit(bank=merchant.sponsor_bank, merchant=merchant, price_points=10)
    program = benefit.price_program
    card = card_at(CardholderFactory(), program.bank)
    s.points_earn(cardholder_id=card.cardholder_id, program=program, amount=100, idempotency_key="seed")
    voucher = s.benefit_redeem(
        cardholder_id=card.cardholder_id,
        card_id=card.pk,
        benefit_id=benefit.pk,
        points={program.pk: 10},
        idempotency_key="v",
    )
    [view] = selectors.vouchers_of(cardholder_id=card.cardholder_id)

    results = run_parallel(2, lambda i: s.voucher_redeem(merchant=merchant, code=view.code))
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Voucher"]
    [refused] = [r for r in results if isinstance(r, Conflict)]
    assert refused.code == "voucher_redeemed"
    voucher.refresh_from_db()
    assert voucher.state == Voucher.State.REDEEMED
    assert Event.objects.filter(type="voucher.redeemed", merchant=merchant).count() == 1
