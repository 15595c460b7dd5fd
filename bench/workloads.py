"""Workloads shared by the payments and routing benchmarks: seeding through the models, and the timed workers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

WORKERS = 8
CARDHOLDERS = 200


def seed(*, channels: int = 1, rules: int = 0) -> dict[str, Any]:
    """Banks, a product, cardholders with cards, a merchant and `channels` in-process channels (+ `rules` rules)."""
    import datetime as dt

    from django.contrib.auth import get_user_model

    from members.models import Card, Cardholder, CardProduct, MemberBank, PointsProgram
    from merchants.models import Merchant
    from payments.models import Channel, RoutingRule, RuleChannel

    banks = []
    for index in range(3):
        bank = MemberBank.objects.create(
            code=f"BB{index}",
            name_zh=f"基准银行{index}",
            name_en=f"Bench bank {index}",
            kind="joint_stock",
            issuing_licence=True,
            acquiring_licence=True,
            joined_on=dt.date(2025, 1, 1),
        )
        PointsProgram.objects.create(bank=bank, unit_code=f"BB{index}-PTS", name="pts", point_value_cny="0.005")
        banks.append(bank)
    products = [
        CardProduct.objects.create(bank=bank, code="GOLD", name="Gold", kind="credit", earning_rates={"other": "1"})
        for bank in banks
    ]
    user_model = get_user_model()
    cards = []
    for index in range(CARDHOLDERS):
        user = user_model.objects.create(username=f"bench{index}")
        holder = Cardholder.objects.create(
            user=user,
            display_name=f"Bench {index}",
            phone_encrypted="x",
            phone_hash=f"{index:064d}",
            phone_last4="0000",
        )
        product = products[index % 3]
        cards.append(
            Card.objects.create(
                cardholder=holder,
                bank=product.bank,
                product=product,
                token=f"card_bench_{index}",
                bin="62260000",
                last4=f"{index:04d}",
                fingerprint=f"fp{index:062d}",
                expiry_month=12,
                expiry_year=2099,
                status="active",
            )
        )
    merchant = Merchant.objects.create(code="BENCH", legal_name="Bench", display_name="Bench", sponsor_bank=banks[0])
    created = []
    for index in range(channels):
        created.append(
            Channel.objects.create(
                code=f"bench-{index:02d}",
                name=f"Bench {index}",
                acquirer=banks[index % 3],
                connector="inprocess",
                methods=["card", "payment_code", "agreement", "balance"],
                currencies=["CNY"],
                fee_percent=f"0.{(index % 9) + 1}0",
            )
        )
    for index in range(rules):
        # Rules that never match the benchmark's payments, then one that does: the engine walks them all.
        rule = RoutingRule.objects.create(
            name=f"rule {index}",
            priority=index + 1,
            strategy=["cheapest", "success_rate", "fixed", "weighted"][index % 4],
            amount_min=10**9 if index < rules - 1 else None,
            epsilon="0.05",
            seed=index,
        )
        for position, channel in enumerate(created[index % len(created) :][:5], start=1):
            RuleChannel.objects.create(rule=rule, channel=channel, position=position, weight=20)
    return {"card_ids": [card.pk for card in cards], "merchant_id": merchant.pk}


def pay_worker(seeded: dict[str, Any], label: str = "bench") -> Any:
    def work(index: int, go: Callable[[], float]) -> list[float]:
        from members.models import Card
        from merchants.models import Merchant
        from payments import routing, services

        merchant = Merchant.objects.get(pk=seeded["merchant_id"])
        cards = list(Card.objects.filter(pk__in=seeded["card_ids"]).select_related("cardholder", "product"))
        routing.load_config()  # channels, rules, risk rules and fee schedules, as a running worker holds them
        deadline = go()
        latencies = []
        for n in itertools.count():
            if time.time() >= deadline:
                break
            card = cards[(index * 7919 + n) % len(cards)]
            started = time.perf_counter()
            intent = services.payment_create(
                merchant=merchant,
                cardholder=card.cardholder,
                card=card,
                amount=10_000 + n % 50,
                currency="CNY",
                idempotency_key=f"{label}-{index}-{n}",
                confirm=True,
            )
            latencies.append(time.perf_counter() - started)
            assert intent.status == "succeeded", intent.failure_code
        return latencies

    return work


def floor_worker(seeded: dict[str, Any]) -> Any:
    """The bare minimum by hand through the ORM: a payment row, an attempt row and two ledger entries."""

    def work(index: int, go: Callable[[], float]) -> list[float]:
        from django.db import transaction

        from members.models import Card
        from merchants.models import Merchant
        from payments.models import Channel, PaymentAttempt, PaymentIntent
        from rewards.models import Account, Entry
        from rewards.services.posting import transaction_keyed

        merchant = Merchant.objects.get(pk=seeded["merchant_id"])
        channel = Channel.objects.order_by("id").first()
        cards = list(Card.objects.filter(pk__in=seeded["card_ids"]))
        wallet = Account.objects.filter(owner_kind="cardholder", purpose="points").order_by("id").first()
        bank_side = Account.objects.filter(unit=wallet.unit).exclude(owner_kind="cardholder").order_by("id").first()
        assert wallet is not None, "run the payments workload first"
        assert bank_side is not None, "run the payments workload first"
        deadline = go()
        latencies = []
        for n in itertools.count():
            if time.time() >= deadline:
                break
            card = cards[(index * 7919 + n) % len(cards)]
            started = time.perf_counter()
            with transaction.atomic():
                intent = PaymentIntent.objects.create(
                    merchant=merchant,
                    cardholder_id=card.cardholder_id,
                    card=card,
                    amount=10_000,
                    currency="CNY",
                    amount_captured=10_000,
                    status="succeeded",
                    channel=channel,
                )
                PaymentAttempt.objects.create(
                    intent=intent,
                    sequence=1,
                    channel=channel,
                    reference=f"{intent.public_id}-1",
                    intent_created_at=intent.created_at,
                    amount=10_000,
                    currency="CNY",
                    status="captured",
                )
                txn = transaction_keyed(
                    kind="earn", idempotency_key=f"floor-{index}-{n}", request_hash="floor", points=100, entry_count=2
                )
                Entry.objects.bulk_create(
                    [
                        Entry(
                            transaction=txn,
                            account=wallet,
                            spread=wallet.spread,
                            unit=wallet.unit,
                            amount=100,
                            balance_after=0,
                            created_at=txn.created_at,
                        ),
                        Entry(
                            transaction=txn,
                            account=bank_side,
                            spread=bank_side.spread,
                            unit=wallet.unit,
                            amount=-100,
                            balance_after=0,
                            created_at=txn.created_at,
                        ),
                    ]
                )
            latencies.append(time.perf_counter() - started)
        return latencies

    return work


def verify(operations: int) -> None:
    from payments.models import PaymentIntent

    succeeded = PaymentIntent.objects.filter(status="succeeded", points_earned__gt=0).count()
    assert succeeded == operations, (succeeded, operations)
    from django.db.models import Sum

    from rewards.models import Account

    earned = PaymentIntent.objects.filter(status="succeeded").aggregate(total=Sum("points_earned"))["total"]
    posted = Account.objects.filter(owner_kind="cardholder", purpose="points").aggregate(total=Sum("posted"))["total"]
    assert earned == posted, (earned, posted)
