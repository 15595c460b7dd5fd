"""A co-funded discount in the ledger: the co-funding bank's part posted as an obligation to the merchant when the
payment is captured, handed back cumulatively by refunds, never posted for a payment that was not captured."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from core.money import proportional_floor
from payments import services
from payments.models import PaymentIntent
from rewards.models import Account, Entry, LedgerTransaction, Promotion, PromotionUse
from rewards.services import promotions as engine
from rewards.services.cofunding_posting import Cofunded, cofunding_post
from tests.factories import ChannelFactory, MemberBankFactory, make_promotion

pytestmark = pytest.mark.django_db
_keys = itertools.count()
Status = PaymentIntent.Status
Kind = LedgerTransaction.Kind


def key() -> str:
    return f"cofund-{next(_keys)}"


@pytest.fixture
def world(points_world: dict[str, Any]) -> dict[str, Any]:
    return {**points_world, "cofunder": MemberBankFactory()}


def cofunded(world: dict[str, Any], share: str = "0.3333", **fields: Any) -> Promotion:
    return make_promotion(
        merchant=world["merchant"],
        cofunder=world["cofunder"],
        cofunder_share=Decimal(share),
        cofunding=Promotion.Cofunding.APPROVED,
        **fields,
    )


def pay(world: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency=kw.pop("currency", "CNY"),
        idempotency_key=key(),
        confirm=True,
        **kw,
    )


def refund(world: dict[str, Any], intent: PaymentIntent, amount: int) -> None:
    services.refund_create(
        merchant=world["merchant"],
        payment_id=intent.public_id,
        idempotency_key=key(),
        amount=amount,
        livemode=intent.livemode,
    )


def balance(world: dict[str, Any], owner: str, currency: str = "CNY") -> int:
    """The clearing balance (ten-thousandths) of the co-funding bank or the merchant; 0 when it has no account."""
    owner_id = world["cofunder"].pk if owner == "bank" else world["merchant"].pk
    account = Account.objects.filter(owner_kind=owner, owner_id=owner_id, purpose="clearing", unit=currency).first()
    return account.posted if account is not None else 0


def cofunding_txns(intent: PaymentIntent) -> list[LedgerTransaction]:
    return list(LedgerTransaction.objects.filter(kind=Kind.COFUNDING, metadata__payment=intent.public_id))


def legs(txn: LedgerTransaction) -> dict[tuple[str, str], int]:
    return {
        (e.account.owner_kind, e.account.unit): e.amount
        for e in Entry.objects.filter(transaction=txn).select_related("account")
    }


def test_a_whole_capture_posts_the_banks_part_once(world: dict[str, Any]) -> None:
    promo = cofunded(world, amount_off=1_001)
    intent = pay(world, 10_000)
    assert (intent.status, intent.amount) == (Status.SUCCEEDED, 8_999)
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.status, use.cost, use.cofunder_cost) == (PromotionUse.Status.CONSUMED, 1_001, 333)
    [txn] = cofunding_txns(intent)
    assert txn.idempotency_key == f"cofund:{use.pk}"
    assert (txn.metadata["promotion"], txn.metadata["use"]) == (promo.public_id, use.pk)
    # 3.33 CNY, in ten-thousandths: the bank owes it, the merchant is owed it.
    assert legs(txn) == {("bank", "CNY"): -33_300, ("merchant", "CNY"): 33_300}
    assert (balance(world, "bank"), balance(world, "merchant")) == (-33_300, 33_300)
    # Posting it again (the capture replayed into the ledger) posts nothing and answers the first transaction.
    again = cofunding_post(
        Cofunded(
            use.pk, intent.public_id, promo.public_id, world["merchant"].pk, world["cofunder"].pk, "CNY", True, 333
        )
    )
    assert again is not None
    assert again.pk == txn.pk
    assert LedgerTransaction.objects.filter(kind=Kind.COFUNDING).count() == 1
    assert balance(world, "bank") == -33_300


def test_a_replayed_capture_request_posts_nothing_more(world: dict[str, Any]) -> None:
    cofunded(world, amount_off=1_001)
    intent = pay(world, 10_000, capture_method="manual")
    assert intent.status == Status.REQUIRES_CAPTURE
    assert cofunding_txns(intent) == []  # authorised, not captured: nothing is owed yet
    capture_key = key()
    for _ in range(2):
        services.payment_capture(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=capture_key)
    assert len(cofunding_txns(intent)) == 1
    assert balance(world, "bank") == -33_300


def test_a_partial_capture_posts_the_banks_part_of_what_was_kept(world: dict[str, Any]) -> None:
    points = make_promotion(merchant=world["merchant"], kind=Promotion.Kind.POINTS_MULTIPLIER, amount_off=None,
                            multiplier=Decimal("2"), priority=-1, stacking=Promotion.Stacking.STACKABLE)  # fmt: skip
    cofunded(world, amount_off=1_001, stacking=Promotion.Stacking.STACKABLE)
    intent = pay(world, 10_000, capture_method="manual")
    services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=5_000
    )
    uses = {use.promotion_id: use for use in PromotionUse.objects.filter(payment=intent.public_id)}
    kept = uses[next(pk for pk in uses if pk != points.pk)]
    # floor(1,001 × 5,000 / 8,999) = 556 kept, of which the bank bears floor(556 × 0.3333) = 185.
    assert (kept.cost, kept.cofunder_cost) == (556, 185)
    [txn] = cofunding_txns(intent)
    assert legs(txn) == {("bank", "CNY"): -18_500, ("merchant", "CNY"): 18_500}


def test_partial_refunds_hand_the_banks_part_back_cumulatively_and_exactly(world: dict[str, Any]) -> None:
    cofunded(world, amount_off=1_001)
    intent = pay(world, 10_000)  # 89.99 charged, 10.01 off, the bank bears 3.33
    [original] = cofunding_txns(intent)
    use = PromotionUse.objects.get(payment=intent.public_id)
    refunded = 0
    bank_before = 0
    for amount in (3_001, 2_999, 1, 2_998):
        refund(world, intent, amount)
        refunded += amount
        returned = proportional_floor(1_001, refunded, 8_999)
        bank_now = proportional_floor(333, returned, 1_001)
        use.refresh_from_db()
        assert use.returned_cost == returned
        # The bank has had back exactly its part of what is returned so far; the merchant handed it over.
        assert balance(world, "bank") == -33_300 + bank_now * 100
        assert balance(world, "merchant") == 33_300 - bank_now * 100
        reversals = LedgerTransaction.objects.filter(reverses=original).order_by("pk")
        if bank_now > bank_before:
            last = reversals.last()
            assert last is not None
            assert (last.kind, last.idempotency_key) == (Kind.REVERSAL, f"cofund:{use.pk}:returned:{bank_now}")
            assert last.metadata["payment"] == intent.public_id
            assert legs(last) == {("bank", "CNY"): (bank_now - bank_before) * 100,
                                  ("merchant", "CNY"): -(bank_now - bank_before) * 100}  # fmt: skip
        bank_before = bank_now
    assert refunded == intent.amount
    # Fully refunded: the steps add up to exactly the bank's part, and both parties are back where they started.
    reversals = LedgerTransaction.objects.filter(reverses=original)
    assert sum(legs(txn)[("bank", "CNY")] for txn in reversals) == 33_300
    assert (balance(world, "bank"), balance(world, "merchant")) == (0, 0)


def test_a_refund_hands_back_to_the_bank_that_funded_it_even_if_the_promotion_changed(world: dict[str, Any]) -> None:
    promo = cofunded(world, share="0.5")
    intent = pay(world, 10_000)
    assert balance(world, "bank") == -50_000
    Promotion.objects.filter(pk=promo.pk).update(cofunder=MemberBankFactory(), cofunding=Promotion.Cofunding.PENDING)
    refund(world, intent, intent.amount)
    assert (balance(world, "bank"), balance(world, "merchant")) == (0, 0)


def test_a_payment_cancelled_before_capture_posts_nothing(world: dict[str, Any]) -> None:
    cofunded(world)
    intent = pay(world, 10_000, capture_method="manual")
    services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert PromotionUse.objects.get(payment=intent.public_id).status == PromotionUse.Status.RELEASED
    assert cofunding_txns(intent) == []
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="cofund:").exists()


def test_a_declined_payment_posts_nothing(world: dict[str, Any]) -> None:
    cofunded(world)  # 10.00 off: 90.51 charged, which the channel declines (it declines amounts ending in 51)
    intent = pay(world, 10_051)
    assert (intent.status, intent.amount) == (Status.FAILED, 9_051)
    assert PromotionUse.objects.get(payment=intent.public_id).status == PromotionUse.Status.RELEASED
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="cofund:").exists()


def test_a_test_mode_payment_posts_no_obligation(world: dict[str, Any]) -> None:
    ChannelFactory(acquirer=world["merchant"].sponsor_bank, sandbox=True)  # where test-mode payments go
    cofunded(world, livemode=False)
    intent = pay(world, 10_000, livemode=False)
    assert intent.status == Status.SUCCEEDED
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.status, use.cofunder_cost) == (PromotionUse.Status.CONSUMED, 333)
    refund(world, intent, 4_000)
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="cofund:").exists()


@pytest.mark.parametrize(("currency", "per_minor"), [("HKD", 100), ("USD", 100), ("EUR", 100), ("JPY", 10_000)])
def test_co_funding_in_another_currency_lands_in_that_currencys_clearing_accounts(
    world: dict[str, Any], currency: str, per_minor: int
) -> None:
    cofunded(world, share="0.25", currency=currency, amount_off=1_000)
    intent = pay(world, 10_000, currency=currency)
    assert intent.discount_amount == 1_000
    [txn] = cofunding_txns(intent)
    assert legs(txn) == {("bank", currency): -250 * per_minor, ("merchant", currency): 250 * per_minor}
    assert (balance(world, "bank"), balance(world, "merchant")) == (0, 0)  # nothing in CNY
    refund(world, intent, intent.amount)
    assert (balance(world, "bank", currency), balance(world, "merchant", currency)) == (0, 0)


def test_a_whole_capture_of_several_discounts_posts_each_use(world: dict[str, Any], monkeypatch: Any) -> None:
    """Two co-funded discounts and a merchant-funded one, captured whole (one statement moves the uses): one
    obligation for each co-funded use, none for the other."""
    whole = []
    consume_whole = engine._consume_whole
    monkeypatch.setattr(engine, "_consume_whole", lambda payment: whole.append(payment) or consume_whole(payment))
    stackable = {"stacking": Promotion.Stacking.STACKABLE}
    first = cofunded(world, amount_off=1_000, **stackable)
    second = cofunded(world, share="0.5", amount_off=500, priority=-1, **stackable)
    make_promotion(merchant=world["merchant"], amount_off=200, priority=-2, **stackable)
    intent = pay(world, 10_000)
    assert (intent.amount, whole) == (8_300, [intent.public_id])
    by_promotion = {txn.metadata["promotion"]: txn for txn in cofunding_txns(intent)}
    assert set(by_promotion) == {first.public_id, second.public_id}
    assert legs(by_promotion[first.public_id]) == {("bank", "CNY"): -33_300, ("merchant", "CNY"): 33_300}
    assert legs(by_promotion[second.public_id]) == {("bank", "CNY"): -25_000, ("merchant", "CNY"): 25_000}
