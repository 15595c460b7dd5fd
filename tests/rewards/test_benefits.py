"""Benefits and vouchers: eligibility and quotas, every price path exact with its obligation, cancellation returning
points, stock and quota once, publishing with four eyes, expiry, and the reads the portal uses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.errors import Conflict, IdempotencyConflict, InsufficientFunds, NotFound, PermissionDenied, ValidationFailed
from members.models import CardProduct
from rewards import selectors
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Benefit, BenefitQuotaUse, Entry, OwnerKind, Purpose, Voucher
from tests.factories import (
    BankOperatorFactory,
    CardFactory,
    CardholderFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    card_at,
    make_benefit,
)

pytestmark = pytest.mark.django_db


def _holder_with_points(program: Any, amount: int = 100_000, **card: Any) -> Any:
    """A card at the programme's bank whose holder has `amount` points there."""
    card_obj = card_at(CardholderFactory(), program.bank, **card)
    s.points_earn(
        cardholder_id=card_obj.cardholder_id, program=program, amount=amount, idempotency_key=f"e{card_obj.pk}"
    )
    return card_obj


def _redeem(card: Any, benefit: Any, points: dict[int, int | None], key: str = "r1") -> Voucher:
    return s.benefit_redeem(
        cardholder_id=card.cardholder_id, card_id=card.pk, benefit_id=benefit.pk, points=points, idempotency_key=key
    )


def _clearing(kind: str, owner_id: int) -> int:
    return sum(
        Entry.objects.filter(
            account__owner_kind=kind, account__owner_id=owner_id, account__purpose=Purpose.CLEARING
        ).values_list("amount", flat=True)
    )


def _wallet(card: Any, program: Any) -> int:
    return s.wallet_account(card.cardholder_id, program).posted


# --- price paths ------------------------------------------------------------------------------------------------------


def test_points_of_the_funders_own_programme_take_exactly_the_price_and_owe_nothing() -> None:
    benefit = make_benefit(price_points=1500, stock_total=5)
    program = benefit.price_program
    card = _holder_with_points(program, 2000)
    voucher = _redeem(card, benefit, {program.pk: 1500})
    assert (voucher.state, _wallet(card, program)) == (Voucher.State.ISSUED, 500)
    assert voucher.points == {str(program.pk): 1500}
    assert voucher.cost_units == 75_000  # 1,500 × 0.005 CNY = 7.5000
    assert _clearing(OwnerKind.BANK, program.bank_id) == 0
    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count, benefit.cost_units) == (4, 1, 75_000)
    with pytest.raises(ValidationFailed) as wrong:
        _redeem(card, benefit, {program.pk: 1499}, key="r2")
    assert wrong.value.code == "price_mismatch"


def test_cny_price_in_another_banks_points_records_the_obligation_to_the_funder() -> None:
    funder = MemberBankFactory()
    payer = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    benefit = make_benefit(bank=funder, pricing=Benefit.Pricing.CNY, price_cny_units=100_000)  # CNY 10
    card = _holder_with_points(payer, 10_000)
    quote = selectors.benefit_quote(benefit_id=benefit.pk, points={payer.pk: None})
    assert quote.points == {payer.pk: 3334}  # ceil(10 / 0.003): the last point rounds up, never more
    voucher = _redeem(card, benefit, {payer.pk: None})
    assert _wallet(card, payer) == 10_000 - 3334
    # 3,334 × 0.003 = 10.0020 CNY: the paying bank owes the funding bank exactly that, in the same transaction
    assert voucher.cost_units == 100_020
    assert _clearing(OwnerKind.BANK, payer.bank_id) == -100_020
    assert _clearing(OwnerKind.BANK, funder.pk) == 100_020
    [payment] = voucher.payments.all()
    assert set(Entry.objects.filter(transaction=payment.transaction, unit="CNY").values_list("amount", flat=True)) == {
        -100_020,
        100_020,
    }
    assert ledger_verify(seals=False).violations == []


def test_mixed_programmes_pay_exactly_and_each_paying_bank_owes_the_merchant_funder() -> None:
    merchant = MerchantFactory()
    a = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    b = PointsProgramFactory(point_value_cny=Decimal("0.002"))
    benefit = make_benefit(
        bank=merchant.sponsor_bank, funding_merchant=merchant, pricing=Benefit.Pricing.CNY, price_cny_units=200_000
    )
    holder = CardholderFactory()
    card = card_at(holder, a.bank)
    card_at(holder, b.bank)
    s.points_earn(cardholder_id=holder.pk, program=a, amount=5000, idempotency_key="ea")
    s.points_earn(cardholder_id=holder.pk, program=b, amount=5000, idempotency_key="eb")
    # CNY 20: 2,000 of A (CNY 10) and the rest in B: ceil(10 / 0.002) = 5,000
    voucher = _redeem(card, benefit, {a.pk: 2000, b.pk: None})
    assert voucher.points == {str(a.pk): 2000, str(b.pk): 5000}
    assert (_wallet(card, a), _wallet(card, b)) == (3000, 0)
    assert _clearing(OwnerKind.BANK, a.bank_id) == -100_000
    assert _clearing(OwnerKind.BANK, b.bank_id) == -100_000
    assert _clearing(OwnerKind.MERCHANT, merchant.pk) == 200_000
    assert voucher.cost_units == 200_000
    for too_much in ({a.pk: 2001, b.pk: 5000}, {a.pk: 4000, b.pk: 1}):
        with pytest.raises(ValidationFailed) as refused:
            _redeem(card, benefit, too_much, key=f"x{too_much}")
        assert refused.value.code == "price_exceeded"
    with pytest.raises(ValidationFailed) as short:
        _redeem(card, benefit, {a.pk: 1000, b.pk: 1000}, key="short")
    assert short.value.code == "price_not_covered"


def test_a_free_privilege_takes_no_points_and_refuses_any() -> None:
    bank = MemberBankFactory()
    gold = CardProductFactory(bank=bank, tier=CardProduct.Tier.GOLD)
    benefit = make_benefit(bank=bank, pricing=Benefit.Pricing.FREE, eligible_tiers=["gold"], limit_per_card=1)
    card = CardFactory(cardholder=CardholderFactory(), product=gold)
    assert selectors.card_privileges(card=card) == [benefit]
    voucher = _redeem(card, benefit, {})
    assert (voucher.points, voucher.cost_units, list(voucher.payments.all())) == ({}, 0, [])
    program = PointsProgramFactory()
    with pytest.raises(ValidationFailed):
        _redeem(card, benefit, {program.pk: 1}, key="r2")


def test_not_enough_points_leaves_stock_quota_and_points_untouched() -> None:
    benefit = make_benefit(stock_total=3, limit_per_month=2)
    card = _holder_with_points(benefit.price_program, 999)
    with pytest.raises(InsufficientFunds):
        _redeem(card, benefit, {benefit.price_program_id: 1000})
    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count) == (3, 0)
    assert not BenefitQuotaUse.objects.exists()
    assert (Voucher.objects.count(), _wallet(card, benefit.price_program)) == (0, 999)


def test_a_replay_returns_the_first_voucher_and_another_request_with_the_key_conflicts() -> None:
    benefit = make_benefit(stock_total=5)
    card = _holder_with_points(benefit.price_program)
    first = _redeem(card, benefit, {benefit.price_program_id: 1000})
    assert _redeem(card, benefit, {benefit.price_program_id: 1000}).pk == first.pk
    other = make_benefit(bank=benefit.bank, price_program=benefit.price_program)
    with pytest.raises(IdempotencyConflict):
        _redeem(card, other, {benefit.price_program_id: 1000})
    benefit.refresh_from_db()
    assert (benefit.stock_left, _wallet(card, benefit.price_program)) == (4, 99_000)


# --- eligibility and quotas -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "eligible"),
    [
        ("none", True),
        ("bank_in", True),
        ("bank_out", False),
        ("product_in", True),
        ("product_out", False),
        ("tier_in", True),
        ("tier_out", False),
        ("frozen", False),
        ("draft", None),
        ("ended", None),
    ],
)
def test_eligibility_matrix(rule: str, eligible: bool | None) -> None:
    bank = MemberBankFactory()
    program = PointsProgramFactory(bank=bank)
    product = CardProductFactory(bank=bank, tier=CardProduct.Tier.PLATINUM)
    card = CardFactory(
        cardholder=CardholderFactory(), product=product, status="frozen" if rule == "frozen" else "active"
    )
    s.points_earn(cardholder_id=card.cardholder_id, program=program, amount=5000, idempotency_key="e")
    other_bank = MemberBankFactory()
    fields: dict[str, Any] = {
        "none": {},
        "bank_in": {"eligible_banks": [bank]},
        "bank_out": {"eligible_banks": [other_bank]},
        "product_in": {"eligible_products": [product]},
        "product_out": {"eligible_products": [CardProductFactory(bank=bank)]},
        "tier_in": {"eligible_tiers": ["platinum", "diamond"]},
        "tier_out": {"eligible_tiers": ["gold"]},
        "frozen": {},
        "draft": {"status": Benefit.Status.DRAFT},
        "ended": {
            "valid_until": timezone.now() - dt.timedelta(minutes=1),
            "valid_from": timezone.now() - dt.timedelta(days=2),
        },
    }[rule]
    benefit = make_benefit(bank=bank, price_program=program, **fields)
    offered = [offer.benefit.pk for offer in selectors.benefits_for(cardholder_id=card.cardholder_id)]
    assert (benefit.pk in offered) is bool(eligible)
    if eligible:
        assert _redeem(card, benefit, {program.pk: 1000}).state == Voucher.State.ISSUED
        return
    expected = (NotFound, Conflict) if eligible is None else ValidationFailed
    with pytest.raises(expected):
        _redeem(card, benefit, {program.pk: 1000})
    assert _wallet(card, program) == 5000


@pytest.mark.parametrize(
    ("limits", "allowed"),
    [
        ({"limit_per_month": 2}, 2),
        ({"limit_per_year": 3}, 3),
        ({"limit_per_month": 5, "limit_per_year": 1}, 1),
        ({"limit_per_card": 2}, 2),
        ({"stock_total": 1}, 1),
        ({"limit_per_month": 0}, 0),
    ],
)
def test_quota_matrix(limits: dict[str, int], allowed: int) -> None:
    benefit = make_benefit(price_points=10, **limits)
    card = _holder_with_points(benefit.price_program)
    results = []
    for i in range(allowed + 1):
        try:
            _redeem(card, benefit, {benefit.price_program_id: 10}, key=f"q{i}")
            results.append("ok")
        except Conflict as exc:
            results.append(exc.code)
    refusal = "benefit_sold_out" if "stock_total" in limits else "benefit_quota_exhausted"
    assert results == ["ok"] * allowed + [refusal]
    assert _wallet(card, benefit.price_program) == 100_000 - 10 * allowed
    offers = selectors.benefits_for(cardholder_id=card.cardholder_id)
    assert benefit.pk not in [offer.benefit.pk for offer in offers]


def test_per_card_quota_counts_each_card_and_the_catalogue_shows_quota_left() -> None:
    benefit = make_benefit(price_points=10, limit_per_card=1, limit_per_month=5)
    program = benefit.price_program
    first = _holder_with_points(program)
    second = card_at(first.cardholder, program.bank)
    [offer] = selectors.benefits_for(cardholder_id=first.cardholder_id)
    assert (offer.quota_left, sorted(offer.card_ids)) == (2, sorted([first.pk, second.pk]))
    _redeem(first, benefit, {program.pk: 10}, key="a")
    [offer] = selectors.benefits_for(cardholder_id=first.cardholder_id)
    assert (offer.quota_left, offer.card_ids) == (1, [second.pk])
    with pytest.raises(Conflict):
        _redeem(first, benefit, {program.pk: 10}, key="b")
    _redeem(second, benefit, {program.pk: 10}, key="c")
    assert selectors.benefits_for(cardholder_id=first.cardholder_id) == []


# --- cancellation -----------------------------------------------------------------------------------------------------


def test_cancel_returns_points_obligation_stock_and_quota_exactly_once() -> None:
    funder = MemberBankFactory()
    payer = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    benefit = make_benefit(
        bank=funder, pricing=Benefit.Pricing.CNY, price_cny_units=100_000, stock_total=2, limit_per_month=1
    )
    card = _holder_with_points(payer, 10_000)
    voucher = _redeem(card, benefit, {payer.pk: None})
    cancelled = s.voucher_cancel(voucher_id=voucher.pk, cardholder_id=card.cardholder_id)
    assert cancelled.state == Voucher.State.CANCELLED
    assert _wallet(card, payer) == 10_000
    assert (_clearing(OwnerKind.BANK, payer.bank_id), _clearing(OwnerKind.BANK, funder.pk)) == (0, 0)
    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count, benefit.cost_units) == (2, 0, 0)
    assert BenefitQuotaUse.objects.get(benefit=benefit).used == 0
    with pytest.raises(Conflict) as again:
        s.voucher_cancel(voucher_id=voucher.pk, cardholder_id=card.cardholder_id)
    assert again.value.code == "voucher_cancelled"
    assert _wallet(card, payer) == 10_000
    benefit.refresh_from_db()
    assert benefit.stock_left == 2
    assert _redeem(card, benefit, {payer.pk: None}, key="again").state == Voucher.State.ISSUED  # the quota is back
    assert ledger_verify(seals=False).violations == []


def test_cancel_is_refused_after_the_window_and_to_anyone_else() -> None:
    benefit = make_benefit(cancel_window_hours=1)
    card = _holder_with_points(benefit.price_program)
    voucher = _redeem(card, benefit, {benefit.price_program_id: 1000})
    with pytest.raises(NotFound):
        s.voucher_cancel(voucher_id=voucher.pk, cardholder_id=CardholderFactory().pk)
    Voucher.objects.filter(pk=voucher.pk).update(issued_at=timezone.now() - dt.timedelta(hours=2))
    with pytest.raises(Conflict) as late:
        s.voucher_cancel(voucher_id=voucher.pk, cardholder_id=card.cardholder_id)
    assert late.value.code == "cancel_window_closed"
    assert _wallet(card, benefit.price_program) == 99_000


# --- expiry -----------------------------------------------------------------------------------------------------------


def test_expiry_job_expires_overdue_vouchers_and_returns_stock_only_when_the_terms_say_so() -> None:
    kept = make_benefit(stock_total=5)
    returned = make_benefit(stock_total=5, return_stock_on_expiry=True)
    card_k = _holder_with_points(kept.price_program)
    card_r = _holder_with_points(returned.price_program)
    old = [_redeem(card_k, kept, {kept.price_program_id: 1000}, key="k1")]
    old.append(_redeem(card_r, returned, {returned.price_program_id: 1000}, key="r1"))
    fresh = _redeem(card_k, kept, {kept.price_program_id: 1000}, key="k2")
    now = timezone.now()
    Voucher.objects.filter(pk__in=[v.pk for v in old]).update(expires_at=now - dt.timedelta(seconds=1))
    assert s.vouchers_expire(now=now, chunk=1) == {"expired": 2, "stock_returned": 1}
    assert s.vouchers_expire(now=now) == {"expired": 0, "stock_returned": 0}
    states = dict(Voucher.objects.values_list("pk", "state"))
    assert [states[v.pk] for v in old] == [Voucher.State.EXPIRED] * 2
    assert states[fresh.pk] == Voucher.State.ISSUED
    kept.refresh_from_db()
    returned.refresh_from_db()
    assert (kept.stock_left, returned.stock_left) == (3, 5)
    assert _wallet(card_k, kept.price_program) == 98_000  # points are never returned on expiry


def test_the_expiry_task_runs_as_a_job() -> None:
    from core.models import JobRun
    from rewards.tasks import vouchers_expire

    assert vouchers_expire() == {"expired": 0, "stock_returned": 0}
    assert JobRun.objects.filter(job="rewards.vouchers_expire", status=JobRun.Status.SUCCEEDED).count() == 1


# --- withdrawing (publishing: test_benefit_publishing.py) -------------------------------------------------------------


def test_withdrawing_stops_a_published_benefit_and_only_an_operator_of_its_bank_may() -> None:
    benefit = make_benefit()
    outsider = BankOperatorFactory().user
    with pytest.raises(PermissionDenied):
        s.benefit_withdraw(benefit_id=benefit.pk, operator=outsider)
    operator = BankOperatorFactory(bank=benefit.bank).user
    assert s.benefit_withdraw(benefit_id=benefit.pk, operator=operator).status == Benefit.Status.WITHDRAWN
    with pytest.raises(Conflict):
        s.benefit_withdraw(benefit_id=benefit.pk, operator=operator)


def test_a_merchants_benefit_is_answered_for_by_its_sponsor_bank() -> None:
    merchant = MerchantFactory()
    with pytest.raises(ValidationFailed) as wrong:
        s.benefit_check(
            bank_id=MemberBankFactory().pk,
            funding_merchant=merchant,
            kind=Benefit.Kind.VOUCHER,
            pricing=Benefit.Pricing.FREE,
            price_program=None,
            price_points=None,
            price_cny_units=None,
            merchant=merchant,
            valid_from=None,
            valid_until=None,
        )
    assert wrong.value.param == "bank"


def test_vouchers_of_shows_the_holders_own_with_code_and_qr() -> None:
    benefit = make_benefit()
    card = _holder_with_points(benefit.price_program)
    voucher = _redeem(card, benefit, {benefit.price_program_id: 1000})
    [view] = selectors.vouchers_of(cardholder_id=card.cardholder_id)
    assert view.voucher.pk == voucher.pk
    assert view.code.endswith(voucher.code_hint)
    assert view.qr_payload == "mengka:voucher:" + view.code
    assert selectors.vouchers_of(cardholder_id=CardholderFactory().pk) == []
