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


def test_redemptions_and_cancellations_racing_on_one_benefit_never_deadlock_and_stay_consistent() -> None:
    from django.db import transaction

    from rewards.models import BenefitQuotaUse, QuotaKind

    holders, each = 10, 3
    benefit = make_benefit(
        price_points=100,
        stock_total=holders * each + 5,
        limit_per_month=10,
        limit_per_year=10,
        limit_per_card=10,
        cancel_window_hours=24,
    )
    program = benefit.price_program
    cards, issued = [], []
    for h in range(holders):
        card = card_at(CardholderFactory(), program.bank)
        s.points_earn(cardholder_id=card.cardholder_id, program=program, amount=1000, idempotency_key=f"seed{h}")
        cards.append(card)
        for n in range(each):
            issued.append(
                s.benefit_redeem(
                    cardholder_id=card.cardholder_id,
                    card_id=card.pk,
                    benefit_id=benefit.pk,
                    points={program.pk: 100},
                    idempotency_key=f"pre{h}:{n}",
                )
            )

    # Per cardholder, one connection cancels its three vouchers while another redeems three more: both touch the
    # holder's quota counters and wallet and the benefit's row. Each call runs in the worker's own outer transaction,
    # so the services' retry after a deadlock does not apply and a deadlock would surface here as an error.
    def work(i: int) -> list[Any]:
        card, outcomes = cards[i // 2], []
        for n in range(each):
            try:
                with transaction.atomic():
                    if i % 2:
                        outcomes.append(
                            s.benefit_redeem(
                                cardholder_id=card.cardholder_id,
                                card_id=card.pk,
                                benefit_id=benefit.pk,
                                points={program.pk: 100},
                                idempotency_key=f"race{i}:{n}",
                            )
                        )
                    else:
                        voucher = issued[(i // 2) * each + n]
                        outcomes.append(s.voucher_cancel(voucher_id=voucher.pk, cardholder_id=card.cardholder_id))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    results = [r for batch in run_parallel(2 * holders, work) for r in batch]
    unexpected = [r for r in results if not isinstance(r, Voucher) and getattr(r, "code", None) != "benefit_sold_out"]
    assert unexpected == []
    cancelled = [r for r in results if isinstance(r, Voucher) and r.state == Voucher.State.CANCELLED]
    assert len(cancelled) == holders * each

    live = Voucher.objects.filter(benefit=benefit, state=Voucher.State.ISSUED)
    benefit.refresh_from_db()
    assert benefit.redeemed_count == live.count()
    assert benefit.stock_left == benefit.stock_total - live.count()
    assert benefit.cost_units == s.points_value_units(100, program) * live.count()
    counters = BenefitQuotaUse.objects.filter(benefit=benefit)
    for card in cards:
        mine = live.filter(cardholder_id=card.cardholder_id).count()
        assert s.wallet_account(card.cardholder_id, program).posted == 1000 - 100 * mine
        used = {
            kind: counters.get(kind=kind, owner_id=card.pk if kind == QuotaKind.CARD else card.cardholder_id).used
            for kind in (QuotaKind.HOLDER_MONTH, QuotaKind.HOLDER_YEAR, QuotaKind.CARD)
        }
        assert used == dict.fromkeys(used, mine)
    assert ledger_verify(seals=False).violations == []


def test_a_redemption_refused_sold_out_at_its_last_write_leaves_nothing_written() -> None:
    from rewards.models import BenefitQuotaUse, LedgerTransaction
    from tests.concurrency import Background, wait_for_lock_waiters

    benefit = make_benefit(price_points=100, stock_total=1, limit_per_month=5)
    program = benefit.price_program
    first, second = (card_at(CardholderFactory(), program.bank) for _ in range(2))
    for n, card in enumerate((first, second)):
        s.points_earn(cardholder_id=card.cardholder_id, program=program, amount=100, idempotency_key=f"seed{n}")

    def redeem(card: Any, key: str) -> Any:
        return s.benefit_redeem(
            cardholder_id=card.cardholder_id,
            card_id=card.pk,
            benefit_id=benefit.pk,
            points={program.pk: 100},
            idempotency_key=key,
        )

    # the first holds the last unit uncommitted; the second, which read one left, does all its writes and then waits
    # on the benefit's row; when the first commits, the guarded update finds none left
    holding = Background(lambda: redeem(first, "first"), hold_open=True)
    late = Background(lambda: redeem(second, "second"))
    wait_for_lock_waiters(1)
    assert isinstance(holding.result(), Voucher)
    with pytest.raises(Conflict) as refused:
        late.result()
    assert refused.value.code == "benefit_sold_out"

    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count) == (0, 1)
    assert list(Voucher.objects.values_list("cardholder_id", flat=True)) == [first.cardholder_id]
    assert s.wallet_account(second.cardholder_id, program).posted == 100
    assert not BenefitQuotaUse.objects.filter(owner_id=second.cardholder_id).exists()
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="benefit:second").exists()
    assert ledger_verify(seals=False).violations == []
