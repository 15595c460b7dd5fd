"""Promotions benchmark: what pricing with promotions costs a quote and a payment.

1. quotes per second with 200 active promotions at one merchant: the engine (`payments.promotions.context_for` then
   `rewards.services.promotions.price`, what a quote runs) in one process, and `POST /api/v1/payments/quote` through
   the Django test client in one process;
2. `POST /api/v1/payments` (confirm, capture) per second from 8 worker processes at a merchant with 3 promotions
   applying to every payment (two amounts off, a percent off with a cap), side by side with the same payments at a
   merchant with no promotions, alternating rounds so that both see the same machine load.

Everything runs in test mode: the API takes a card token only from a test key (a live payment needs a payment code the
cardholder shows), so the points kinds, which a test-mode payment never gives, are among the promotions refused.

    .venv/bin/python bench/promotions.py [--seconds 20] [--redis URL|none] [--database NAME] [--keep]

Its database and Redis db are its own (bench/common.py). Last line:
BENCH promotions quote_per_s=... api_quote_per_s=... pay_per_s=... plain_per_s=... pay_vs_plain=... redis=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from decimal import Decimal
from typing import Any

from common import add_arguments, describe, run_workers, setup
from workloads import WORKERS, seed

ROUNDS = 4
PROMOTIONS = 200
AMOUNT = 10_000
# The three promotions on every payment at the promotions merchant: 5.00 off, 2.00 off from 50.00, then 5% of the
# 93.00 left (4.65).
DISCOUNT = 500 + 200 + 465
PAYABLE = AMOUNT - DISCOUNT


def make_promotions(quote_merchant: Any, pay_merchant: Any, other_bank: Any) -> None:
    """200 active promotions at `quote_merchant`, three of which apply to the benchmark's quotes (the same three
    as at `pay_merchant`); the others each fail one condition of a different kind, as a real catalogue would."""
    from django.utils import timezone

    from merchants.models import Store
    from rewards.models import Promotion

    now = timezone.now()
    window = {"starts_at": now - dt.timedelta(days=1), "ends_at": now + dt.timedelta(days=30), "livemode": False}
    applying: list[dict[str, Any]] = [
        {"kind": "amount_off", "amount_off": 500, "priority": 30},
        {"kind": "amount_off", "amount_off": 200, "min_spend": 5_000, "priority": 25},
        {"kind": "percent_off", "percent_off": Decimal(5), "max_discount": 1_000, "priority": 20},
    ]
    for merchant in (quote_merchant, pay_merchant):
        for index, fields in enumerate(applying):
            Promotion.objects.create(
                merchant=merchant,
                name=f"applies {index}",
                stacking="stackable",
                budget=10**15,
                **window,
                **fields,
            )
    store = Store.objects.create(merchant=quote_merchant, code="ELSEWHERE", name="Elsewhere", livemode=False)
    not_now = (now.astimezone(timezone.get_current_timezone()).hour + 12) % 24
    failing: list[dict[str, Any]] = [
        {"kind": "amount_off", "amount_off": 2_000, "min_spend": 1_000_000, "stacking": "exclusive"},
        {"kind": "percent_off", "percent_off": Decimal(10), "max_discount": 3_000, "card_banks": [other_bank]},
        {"kind": "random_off", "random_min": 100, "random_max": 900, "random_mean": 300, "categories": ["travel"]},
        {"kind": "cashback_points", "cashback_rate": Decimal("0.05"), "hour_from": not_now, "hour_to": not_now + 1},
        {"kind": "points_multiplier", "multiplier": Decimal(2)},  # refused: a test-mode payment gives no points
        {"kind": "frequency_reward", "frequency_count": 5, "methods": ["payment_code"]},
        {"kind": "amount_off", "amount_off": 300, "per_cardholder_daily": 1, "stores": [store]},
        # asks whether this is the cardholder's first payment here (yes), then is refused as not stackable
        {"kind": "amount_off", "amount_off": 800, "first_purchase": True, "stacking": "exclusive", "priority": 0},
        {"kind": "percent_off", "percent_off": Decimal(20), "segment_tags": ["vip"]},
        {"kind": "amount_off", "amount_off": 100, "card_tiers": ["platinum"]},
        {"kind": "amount_off", "amount_off": 100, "currency": "JPY"},
    ]
    for index in range(PROMOTIONS - len(applying)):
        fields = dict(failing[index % len(failing)])
        banks, stores = fields.pop("card_banks", []), fields.pop("stores", [])
        promotion = Promotion.objects.create(
            merchant=quote_merchant,
            name=f"elsewhere {index}",
            stacking=fields.pop("stacking", "stackable"),
            priority=fields.pop("priority", index % 50),
            budget=10**9,
            **window,
            **fields,
        )
        if banks or stores:
            promotion.card_banks.set(banks)
            promotion.stores.set(stores)
            Promotion.objects.filter(pk=promotion.pk).update(updated_at=timezone.now())


def engine_quotes(merchant: Any, cards: list[Any], seconds: float) -> tuple[float, dict[str, Any]]:
    from django.utils import timezone

    from payments.promotions import context_for
    from rewards.services.promotions import price

    def quote(card: Any) -> Any:
        context = context_for(
            merchant=merchant,
            livemode=False,
            amount=AMOUNT,
            currency="CNY",
            method="card",
            cardholder=card.cardholder,
            card=card,
            store=None,
            at=timezone.now(),
        )
        return price(context)

    pricing = quote(cards[0])  # warm: compiles the 200 rules once
    assert (pricing.discount, len(pricing.lines), len(pricing.not_applied)) == (DISCOUNT, 3, PROMOTIONS - 3), (
        pricing.discount,
        [n.reason for n in pricing.not_applied][:12],
    )
    latencies = []
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        pricing = quote(cards[n % len(cards)])
        latencies.append(time.perf_counter() - started)
        n += 1
    assert pricing.payable == PAYABLE
    return n / sum(latencies), describe(latencies)


def api_client(raw_key: str) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_HOST="localhost")
    return client


def api_quotes(raw_key: str, cards: list[Any], seconds: float) -> tuple[float, dict[str, Any]]:
    client = api_client(raw_key)

    def quote(card: Any) -> Any:
        body = {"amount": AMOUNT, "currency": "CNY", "payment_method": {"type": "card_token", "token": card.token}}
        response = client.post("/api/v1/payments/quote", body, format="json")
        assert response.status_code == 200, response.content[:500]
        return response.json()

    out = quote(cards[0])
    assert (out["discount"], len(out["promotions"]), len(out["not_applied"])) == (DISCOUNT, 3, PROMOTIONS - 3)
    latencies = []
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        out = quote(cards[n % len(cards)])
        latencies.append(time.perf_counter() - started)
        n += 1
    assert out["amount_payable"] == PAYABLE
    return n / sum(latencies), describe(latencies)


def pay_worker(raw_key: str, tokens: list[str], label: str, discount: int) -> Any:
    def work(index: int, go: Any) -> list[float]:
        from payments import routing

        client = api_client(raw_key)
        routing.load_config()  # as a running worker holds it
        deadline = go()
        latencies = []
        n = 0
        while time.time() < deadline:
            token = tokens[(index * 7919 + n) % len(tokens)]
            body = {
                "amount": AMOUNT,
                "currency": "CNY",
                "payment_method": {"type": "card_token", "token": token},
                "confirm": True,
            }
            started = time.perf_counter()
            response = client.post("/api/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY=f"{label}-{index}-{n}")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.content[:500]
            out = response.json()
            assert (out["status"], out["amount"]) == ("succeeded", AMOUNT - discount), out
            n += 1
        return latencies

    return work


def verify(pay_merchant: Any, plain_merchant: Any, paid: int, plain: int) -> None:
    from django.db.models import Count, Sum

    from payments.models import PaymentIntent
    from rewards.models import Promotion, PromotionUse

    with_promotions = PaymentIntent.objects.filter(merchant=pay_merchant, status="succeeded")
    assert with_promotions.count() == paid
    assert not with_promotions.exclude(discount_amount=DISCOUNT).exists()
    without = PaymentIntent.objects.filter(merchant=plain_merchant, status="succeeded")
    assert without.count() == plain
    assert not without.exclude(discount_amount=0).exists()
    for promotion in Promotion.objects.filter(merchant=pay_merchant):
        uses = PromotionUse.objects.filter(promotion=promotion, status="consumed").aggregate(
            n=Count("id"), cost=Sum("cost")
        )
        assert (promotion.uses, promotion.committed) == (paid, uses["cost"]), (promotion.name, uses)
        assert uses["n"] == paid


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--seconds", type=float, default=20.0, help="the payments' measuring time (both sides)")
    args = parser.parse_args()
    os.environ.setdefault("API_RATE_PER_KEY", "1000000/second")  # the per-key throttle is not what is measured
    run = setup("promotions", args)

    from members.models import Card, MemberBank
    from merchants.models import Merchant
    from merchants.services import api_key_create
    from payments.models import Channel

    seeded = seed()
    pay_merchant = Merchant.objects.get(pk=seeded["merchant_id"])
    pay_merchant.spend_category = "other"
    pay_merchant.save()

    def merchant(code: str) -> Merchant:
        return Merchant.objects.create(
            code=code,
            legal_name=code,
            display_name=code,
            sponsor_bank=pay_merchant.sponsor_bank,
            spend_category="other",
        )

    quote_merchant, plain_merchant = merchant("BENCHQ"), merchant("BENCHN")
    other_bank = MemberBank.objects.create(
        code="BBX", name_zh="其他", name_en="Other", kind="joint_stock", joined_on=dt.date(2025, 1, 1)
    )
    make_promotions(quote_merchant, pay_merchant, other_bank)
    Channel.objects.create(
        code="bench-sandbox",
        name="Bench sandbox",
        acquirer=pay_merchant.sponsor_bank,
        connector="inprocess",
        methods=["card"],
        currencies=["CNY"],
        sandbox=True,
    )
    keys = {
        m.pk: api_key_create(merchant=m, mode="test").raw_key for m in (quote_merchant, pay_merchant, plain_merchant)
    }
    cards = list(Card.objects.filter(pk__in=seeded["card_ids"]).select_related("cardholder", "product"))
    tokens = [card.token for card in cards]

    quote_seconds = min(10.0, max(2.0, args.seconds / 4))
    quote_per_s, quote_stats = engine_quotes(quote_merchant, cards, quote_seconds)
    api_quote_per_s, api_stats = api_quotes(keys[quote_merchant.pk], cards, quote_seconds)

    # Alternate rounds with and without promotions so that both see the same machine load.
    counts = {"with": 0, "without": 0}
    elapsed = {"with": 0.0, "without": 0.0}
    latencies: dict[str, list[float]] = {"with": [], "without": []}
    for round_index in range(ROUNDS):
        for side, target, discount in (("with", pay_merchant, DISCOUNT), ("without", plain_merchant, 0)):
            worker = pay_worker(keys[target.pk], tokens, f"{side}{round_index}", discount)
            done, lat, took = run_workers(WORKERS, args.seconds / ROUNDS, worker)
            counts[side] += done
            elapsed[side] += took
            latencies[side] += lat
    verify(pay_merchant, plain_merchant, counts["with"], counts["without"])
    pay_per_s = counts["with"] / elapsed["with"]
    plain_per_s = counts["without"] / elapsed["without"]
    pay_stats = describe(latencies["with"])
    plain_stats = describe(latencies["without"])
    print(
        f"BENCH promotions quote_per_s={quote_per_s:.0f} api_quote_per_s={api_quote_per_s:.0f}"
        f" pay_vs_plain={pay_per_s / plain_per_s:.2f} pay_per_s={pay_per_s:.0f} plain_per_s={plain_per_s:.0f}"
        f" quote_p50_ms={quote_stats['p50_ms']} api_quote_p50_ms={api_stats['p50_ms']}"
        f" pay_p50_ms={pay_stats['p50_ms']} plain_p50_ms={plain_stats['p50_ms']} redis={run.redis}"
    )


if __name__ == "__main__":
    main()
