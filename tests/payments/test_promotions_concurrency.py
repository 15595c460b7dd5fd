"""Promotion budgets and limits on PostgreSQL with real parallel connections: 200 payments racing for a nearly spent
budget never give a cent more than it holds, `max_uses` and a cardholder's limits hold under the same race, and
payments reserving several promotions in another order than they apply never deadlock."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum

from payments import services
from payments.models import PaymentIntent
from rewards.models import Promotion, PromotionCounter, PromotionUse
from rewards.services import promotions as engine
from tests.concurrency import run_parallel
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    make_promotion,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The database server shared by the test run allows 100 connections in all: 20 connections released together, each
# making its payments in a row, keep 200 payments racing without the server refusing connections.
CONNECTIONS = 20
PAYMENTS = 200
TIME_LIMIT = 60.0
Status = PaymentIntent.Status


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer = MemberBankFactory()
    product = CardProductFactory(bank=issuer)
    cards = [CardFactory(product=product) for _ in range(CONNECTIONS)]
    merchant = MerchantFactory(spend_category="other")
    ChannelFactory(acquirer=merchant.sponsor_bank, code="acq-promo-race")
    return {"cards": cards, "merchant": merchant, "fake": channel_fake}


def promotion(world: dict[str, Any], **fields: Any) -> Promotion:
    race_terms = {"amount_off": 100, "budget": 10_000_000, "stacking": Promotion.Stacking.STACKABLE}
    return make_promotion(merchant=world["merchant"], name="race", **{**race_terms, **fields})


def race(world: dict[str, Any], amount: int, *, one_card: bool = False, payments: int = PAYMENTS) -> list[Any]:
    """`payments` card payments of `amount` each on CONNECTIONS connections released together; each result is the
    payment or the exception it raised. Fails if the race takes longer than TIME_LIMIT (a deadlock or a stall)."""
    per = payments // CONNECTIONS

    def pay(thread: int, n: int) -> Any:
        card = world["cards"][0 if one_card else thread]
        try:
            return services.payment_create(
                merchant=world["merchant"],
                cardholder=card.cardholder,
                card=card,
                amount=amount,
                currency="CNY",
                idempotency_key=f"race-{thread}-{n}",
                confirm=True,
            )
        except Exception as exc:
            return exc

    started = time.monotonic()
    batches = run_parallel(CONNECTIONS, lambda thread: [pay(thread, n) for n in range(per)])
    elapsed = time.monotonic() - started
    assert elapsed < TIME_LIMIT, f"{payments} payments took {elapsed:.1f} s"
    results = [result for batch in batches for result in batch]
    assert len(results) == payments
    return results


def payments_of(results: list[Any]) -> list[PaymentIntent]:
    errors = [r for r in results if not isinstance(r, PaymentIntent)]
    assert errors == [], errors[:3]
    return [PaymentIntent.objects.get(pk=r.pk) for r in results]


def uses_by_payment(promo: Promotion) -> dict[str, PromotionUse]:
    return {use.payment: use for use in PromotionUse.objects.filter(promotion=promo)}


def consumed_cost(promo: Promotion) -> int:
    total = PromotionUse.objects.filter(promotion=promo, status=PromotionUse.Status.CONSUMED).aggregate(
        total=Sum("cost")
    )["total"]
    return int(total or 0)


def test_200_payments_against_a_nearly_spent_random_budget_never_give_a_cent_too_many(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "rng", random.Random(37))  # shared by the threads: draws vary, within bounds
    budget, left = 1_000_000, 37 * 300  # room for about 37 uses of 3.00 on average
    promo = promotion(
        world,
        kind=Promotion.Kind.RANDOM_OFF,
        amount_off=None,
        random_min=100,
        random_max=900,
        random_mean=300,
        budget=budget,
    )
    Promotion.objects.filter(pk=promo.pk).update(committed=budget - left, uses=1_000)
    asked = 5_000
    intents = payments_of(race(world, asked))
    uses = uses_by_payment(promo)
    promo.refresh_from_db()
    given = consumed_cost(promo)
    # Never a cent over: what the payments were given is what the budget holds as committed, and no more than it had.
    assert promo.committed <= budget
    assert promo.committed - (budget - left) == given
    assert given <= left
    succeeded = [i for i in intents if i.status == Status.SUCCEEDED]
    assert sum(i.discount_amount for i in succeeded) == given
    assert promo.uses - 1_000 == sum(1 for i in succeeded if i.discount_amount)
    for intent in intents:
        use = uses.get(intent.public_id)
        assert intent.amount + intent.discount_amount == asked
        if intent.status == Status.SUCCEEDED and intent.discount_amount:  # its discount, consumed whole
            assert use is not None
            assert (use.status, use.cost) == (PromotionUse.Status.CONSUMED, intent.discount_amount)
            assert 100 <= use.discount <= 900
        elif intent.status == Status.SUCCEEDED:  # or in full, nothing reserved
            assert use is None
            assert intent.promotions == []
        else:  # declined by the channel (its cash part ended in 51–56): its reservation went back
            assert intent.status == Status.FAILED
            assert use is None or use.status == PromotionUse.Status.RELEASED
    discounted = sum(1 for i in succeeded if i.discount_amount)
    assert 12 <= discounted <= 111  # 11,100 in uses of 100 to 900
    assert sum(1 for i in succeeded if not i.discount_amount) >= PAYMENTS - 111 - 20
    # Spent down: what is left is less than the least a use gives, so the payments that paid in full had to.
    assert budget - promo.committed < 100
    assert not PromotionUse.objects.filter(promotion=promo, status=PromotionUse.Status.RESERVED).exists()


def test_max_uses_holds_under_the_same_race(world: dict[str, Any]) -> None:
    promo = promotion(world, max_uses=25, amount_off=100)
    intents = payments_of(race(world, 5_000))
    assert all(i.status == Status.SUCCEEDED for i in intents)
    discounted = [i for i in intents if i.discount_amount]
    assert len(discounted) == 25
    assert all((i.amount, i.discount_amount) == (4_900, 100) for i in discounted)
    assert all(i.amount == 5_000 for i in intents if not i.discount_amount)
    promo.refresh_from_db()
    assert (promo.uses, promo.committed) == (25, 2_500)
    assert PromotionUse.objects.filter(promotion=promo, status=PromotionUse.Status.CONSUMED).count() == 25
    assert consumed_cost(promo) == 2_500


def test_one_cardholders_concurrent_payments_get_exactly_their_limits_without_deadlock(
    world: dict[str, Any],
) -> None:
    # Reserved in promotion id order, applied in priority order (the other way round here): no deadlock either way.
    daily = promotion(world, per_cardholder_daily=2, amount_off=100, priority=1)
    campaign = promotion(world, per_cardholder=3, amount_off=200, priority=2)
    budgeted = promotion(
        world, kind=Promotion.Kind.PERCENT_OFF, amount_off=None, percent_off=Decimal(1), budget=250, priority=3
    )
    intents = payments_of(race(world, 10_000, one_card=True, payments=40))
    assert all(i.status == Status.SUCCEEDED for i in intents)
    holder = world["cards"][0].cardholder_id
    got = {promo.pk: 0 for promo in (daily, campaign, budgeted)}
    for intent in intents:
        for use in PromotionUse.objects.filter(payment=intent.public_id):
            assert use.status == PromotionUse.Status.CONSUMED
            got[use.promotion_id] += 1
        lines = sum(line["discount"] for line in intent.promotions)
        assert intent.amount + intent.discount_amount == 10_000
        assert lines == intent.discount_amount
    assert got == {daily.pk: 2, campaign.pk: 3, budgeted.pk: 2}  # 1% of 10,000 is 100: two fit in 250
    counters = dict(PromotionCounter.objects.filter(cardholder_id=holder).values_list("promotion_id", "used"))
    assert counters == {daily.pk: 2, campaign.pk: 3}
    for promo, uses, committed in ((daily, 2, 200), (campaign, 3, 600), (budgeted, 2, 200)):
        promo.refresh_from_db()
        assert (promo.uses, promo.committed) == (uses, committed)
