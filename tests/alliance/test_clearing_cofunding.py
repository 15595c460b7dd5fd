"""Promotion co-funding in clearing: the co-funding bank owes the merchant (carried by its sponsor bank) its part of a
discount, per currency, and a refund's return of that part nets the other way."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from alliance import selectors, services
from alliance.models import ClearingComponent, ClearingPosition, ClearingRun
from core.calendar import SHANGHAI, local_now
from rewards.models import LedgerTransaction, Promotion, PromotionUse
from rewards.services import promotions as engine
from tests.factories import CardholderFactory, MemberBankFactory, MerchantFactory, make_promotion

pytestmark = pytest.mark.django_db
YESTERDAY = local_now().date() - dt.timedelta(days=1)


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    cofunder = MemberBankFactory(code="AAA1")
    sponsor = MemberBankFactory(code="SSS1")
    merchant = MerchantFactory(sponsor_bank=sponsor, code="MSHOP1")
    return {"cofunder": cofunder, "sponsor": sponsor, "merchant": merchant, "holder": CardholderFactory()}


def captured_and_refunded(world: dict[str, Any], payment: str, *, currency: str, refunded: int) -> None:
    """A payment of 90.00 with 10.00 off, half of it co-funded by AAA1, captured whole and then `refunded` of it —
    through the engine, as the payment's capture and refund call it — all yesterday."""
    promotion = make_promotion(
        merchant=world["merchant"],
        currency=currency,
        amount_off=1_000,
        committed=1_000,
        uses=1,
        cofunder=world["cofunder"],
        cofunder_share=Decimal("0.5"),
        cofunding=Promotion.Cofunding.APPROVED,
    )
    PromotionUse.objects.create(
        promotion=promotion, cardholder=world["holder"], payment=payment, day=YESTERDAY, discount=1_000, cost=1_000
    )
    engine.consume(
        payment=payment,
        captured=engine.Captured(world["holder"].pk, None, captured=9_000, authorized=9_000, earned=0, program=None),
        priced=[{"kind": Promotion.Kind.AMOUNT_OFF}],
    )
    engine.refund_return(payment=payment, refunded_total=refunded, captured_total=9_000, cause=f"{payment}-refund")
    at = dt.datetime.combine(YESTERDAY, dt.time(12), tzinfo=SHANGHAI)
    LedgerTransaction.objects.redate(
        LedgerTransaction.objects.filter(metadata__payment=payment).values_list("pk", flat=True), at
    )


def positions(run: ClearingRun) -> dict[str, ClearingPosition]:
    return {p.party_code: p for p in ClearingPosition.objects.filter(run=run)}


def components(run: ClearingRun) -> dict[tuple[str, str, int | None], int]:
    return {
        (c.position.party_code, c.kind, c.merchant_id): c.amount
        for c in ClearingComponent.objects.filter(run=run).select_related("position")
    }


def test_the_day_nets_the_co_funding_and_its_return(world: dict[str, Any]) -> None:
    captured_and_refunded(world, "pay_cofunded", currency="CNY", refunded=3_000)
    original = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.COFUNDING)
    run = services.clearing_run(YESTERDAY)
    by_party = positions(run)
    assert set(by_party) == {"AAA1", "SSS1"}
    # AAA1 owes its 5.00 and has back its part of the 3.33 refunded: floor(500 × 333 / 1,000) = 1.66.
    merchant = world["merchant"].pk
    assert components(run) == {
        ("AAA1", "cofunding", None): -50_000,
        ("AAA1", "reversal", None): 16_600,
        ("SSS1", "cofunding", merchant): 50_000,
        ("SSS1", "reversal", merchant): -16_600,
    }
    assert (by_party["AAA1"].net, by_party["SSS1"].net) == (-33_400, 33_400)
    assert sum(p.net_minor for p in by_party.values()) == 0
    assert (by_party["AAA1"].net_minor, by_party["SSS1"].net_minor) == (-334, 334)
    # The sponsor's statement traces both lines to the payment and the merchant; the return to what it reverses.
    lines = selectors.statement_lines(by_party["SSS1"])
    assert sum(line.amount for line in lines) == by_party["SSS1"].net
    assert {(line.component, line.payment, line.merchant, line.counterparties) for line in lines} == {
        ("cofunding", "pay_cofunded", "MSHOP1", "AAA1"),
        ("reversal", "pay_cofunded", "MSHOP1", "AAA1"),
    }
    assert [line.reverses for line in lines if line.component == "reversal"] == [original.pk]


def test_each_currency_is_cleared_apart(world: dict[str, Any]) -> None:
    captured_and_refunded(world, "pay_cny", currency="CNY", refunded=0)
    captured_and_refunded(world, "pay_jpy", currency="JPY", refunded=9_000)
    cny = services.clearing_run(YESTERDAY, "CNY")
    assert components(cny) == {
        ("AAA1", "cofunding", None): -50_000,
        ("SSS1", "cofunding", world["merchant"].pk): 50_000,
    }
    # A yen is 10,000 ten-thousandths: 500 yen co-funded, all of it handed back by the full refund.
    jpy = services.clearing_run(YESTERDAY, "JPY")
    assert components(jpy) == {
        ("AAA1", "cofunding", None): -5_000_000,
        ("AAA1", "reversal", None): 5_000_000,
        ("SSS1", "cofunding", world["merchant"].pk): 5_000_000,
        ("SSS1", "reversal", world["merchant"].pk): -5_000_000,
    }
    assert {p.net for p in positions(jpy).values()} == {0}
