"""Demo payments: channels over the simulator, demo merchants, routing rules, and payment history made through the
services and the simulator (captures, manual captures, refunds, voids, a few declines). Idempotent: stable keys."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

from django.conf import settings

from members.models import Card, MemberBank
from merchants.models import Merchant
from merchants.services import merchant_create

from . import services
from .connectors import get_connector
from .models import Channel, ChannelErrorPolicy, PaymentIntent, RoutingRule

# (code, name, kind, acquirer bank code, simulator channel id, methods, currencies, fee percent)
CHANNELS = (
    (
        "unionpay-a",
        "银联收单 A / UnionPay acquiring A",
        "acquirer",
        "HXSB",
        "acq-unionpay-a",
        ["card", "payment_code", "agreement"],
        ["CNY", "HKD", "USD", "EUR", "JPY"],
        "0.38",
    ),
    (
        "bank-b",
        "江海收单 / Jianghai acquiring",
        "acquirer",
        "JHBK",
        "acq-bank-b",
        ["card", "payment_code", "agreement"],
        ["CNY", "HKD"],
        "0.45",
    ),
    (
        "global-c",
        "明丰跨境收单 / Mingfeng cross-border",
        "acquirer",
        "MFBK",
        "acq-global-c",
        ["card", "agreement"],
        ["USD", "EUR", "JPY", "HKD"],
        "0.80",
    ),
    (
        "debit-hxsb",
        "华信余额直付 / Huaxin balance debit",
        "bank_debit",
        "HXSB",
        "debit-icbc",
        ["balance"],
        ["CNY"],
        "0.20",
    ),
    (
        "debit-jhbk",
        "江海余额直付 / Jianghai balance debit",
        "bank_debit",
        "JHBK",
        "debit-cmb",
        ["balance"],
        ["CNY"],
        "0.20",
    ),
    ("wallet-yy", "银盈钱包 / Yinying wallet", "wallet", "YYPAY", "wallet-x", ["balance"], ["CNY", "HKD"], "0.30"),
    ("prepaid-yy", "银盈预付 / Yinying prepaid", "prepaid", "YYPAY", "prepaid-x", ["balance"], ["CNY"], "0.25"),
    ("ecny-jhcc", "锦湖数字人民币 / Jinhu e-CNY", "digital_rmb", "JHCC", "ecny-x", ["balance"], ["CNY"], "0.00"),
)
# (code, legal name, display name, MCC, spend category, sponsor bank code)
MERCHANTS = (
    ("DEMO-NOODLE", "上海面面俱到餐饮有限公司", "面面俱到 Noodle House", "5812", "dining", "HXSB"),
    ("DEMO-GROCER", "江海鲜到家超市有限公司", "鲜到家 Fresh Grocer", "5411", "groceries", "JHBK"),
    ("DEMO-FUEL", "明丰能源加油站有限公司", "明丰加油 Mingfeng Fuel", "5541", "fuel", "MFBK"),
    ("DEMO-TRAVEL", "锦湖假期旅行社有限公司", "锦湖假期 Jinhu Holidays", "4722", "travel", "JHCC"),
    ("DEMO-SHOP", "银盈优选电子商务有限公司", "银盈优选 Yinying Select", "5999", "online", "YYPAY"),
)
HISTORY = {"small": 1_500, "large": 20_000}


def seed_payments(ctx: Any) -> None:
    banks = {bank.code: bank for bank in MemberBank.objects.all()}
    if not {"HXSB", "JHBK", "MFBK", "JHCC", "YYPAY"} <= set(banks):
        return
    channels = _channels(banks)
    merchants = _merchants(banks)
    _rules(channels, merchants)
    ctx.codes.extend((f"merchant {m.display_name}", m.code) for m in merchants)
    _history(ctx, merchants)


def _channels(banks: dict[str, MemberBank]) -> dict[str, Channel]:
    existing = {channel.code: channel for channel in Channel.objects.all()}
    for code, name, kind, bank_code, remote, methods, currencies, fee in CHANNELS:
        if code not in existing:
            existing[code] = services.channel_create(
                code=code,
                name=name,
                kind=kind,
                acquirer=banks[bank_code],
                methods=methods,
                currencies=currencies,
                connector="simulator",
                remote_id=remote,
                fee_percent=Decimal(fee),
            )
    if not ChannelErrorPolicy.objects.exists():
        ChannelErrorPolicy.objects.create(error_code="invalid_instrument", retry=False, note="the request is wrong")
        ChannelErrorPolicy.objects.create(error_code="idempotency_mismatch", retry=False, note="never retry a clash")
    return existing


def _merchants(banks: dict[str, MemberBank]) -> list[Merchant]:
    merchants = []
    for code, legal, display, mcc, category, sponsor in MERCHANTS:
        merchant = Merchant.objects.filter(code=code).first() or merchant_create(
            code=code,
            legal_name=legal,
            display_name=display,
            sponsor_bank=banks[sponsor],
            category_code=mcc,
            spend_category=category,
        )
        merchants.append(merchant)
    return merchants


def _rules(channels: dict[str, Channel], merchants: list[Merchant]) -> None:
    if RoutingRule.objects.exists():
        return
    services.routing_rule_create(
        name="大额走成功率最优 / large tickets by success rate",
        strategy="success_rate",
        priority=10,
        amount_min=100_000,
        epsilon=Decimal("0.05"),
        seed=2026,
        channels=[(channels["unionpay-a"], 0), (channels["bank-b"], 0)],
    )
    services.routing_rule_create(
        name="网购分流 70/30 / online split",
        strategy="weighted",
        priority=20,
        merchant=merchants[-1],
        channels=[(channels["unionpay-a"], 70), (channels["bank-b"], 30)],
    )
    services.routing_rule_create(
        name="外币走跨境 / foreign currency cross-border",
        strategy="fixed",
        priority=30,
        currency="USD",
        channels=[(channels["global-c"], 0), (channels["unionpay-a"], 0)],
    )


def _history(ctx: Any, merchants: list[Merchant]) -> None:
    """Payments through the services and the simulator, with the simulator's latency lifted while seeding."""
    target = HISTORY.get(ctx.scale, HISTORY["small"])
    done = PaymentIntent.objects.filter(metadata__demo=True).count()
    if done >= target:
        return
    connector = get_connector("simulator")
    if not _wait_for(connector):
        if ctx.out is not None:
            ctx.out.write(
                f"  the channel simulator is not reachable at {settings.SIMULATOR['URL']}: payment history skipped "
                "(start it with `python -m simulator`, or use `make run`)\n"
            )
        return
    remotes = [channel.remote_id for channel in Channel.objects.filter(connector="simulator")]
    for remote in remotes:
        connector.set_faults(remote, latency_ms=0, latency_jitter_ms=0)  # type: ignore[attr-defined]
    try:
        _make_history(ctx, merchants, done, target)
    finally:
        for remote in remotes:
            connector.set_faults(remote, latency_ms=30, latency_jitter_ms=30)  # type: ignore[attr-defined]


def _wait_for(connector: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if connector.healthy():
                return True
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.25)
    return False


def _make_history(ctx: Any, merchants: list[Merchant], start: int, target: int) -> None:
    from core.jobs import job_run

    rng = random.Random(2026)  # noqa: S311 - demo data, reproducible
    cards = list(Card.objects.filter(status="active").select_related("cardholder", "product", "bank")[:2_000])
    if not cards:
        return
    with job_run("demo.payments", period=ctx.scale, total=target, echo=ctx.out) as run:
        run.advance(start)
        for index in range(target):
            merchant = merchants[index % len(merchants)]
            card = cards[rng.randrange(len(cards))]
            amount = rng.choice([1_280, 2_590, 4_800, 8_800, 12_900, 26_600, 58_800, 128_800, 9_990, 36_000])
            decline = index % 97 == 0
            if decline:
                amount = amount // 100 * 100 + 51  # the simulator's decline trigger
            manual = index % 11 == 0
            if index < start:
                rng.random()
                continue
            intent = services.payment_create(
                merchant=merchant,
                cardholder=card.cardholder,
                card=card,
                amount=amount,
                currency="CNY",
                capture_method="manual" if manual else "automatic",
                idempotency_key=f"demo-pay-{index}",
                confirm=True,
                metadata={"demo": True},
                description="demo",
            )
            if manual and intent.status == "requires_capture" and index % 3 != 0:
                services.payment_capture(
                    merchant=merchant, payment_id=intent.public_id, idempotency_key=f"demo-cap-{index}"
                )
            elif intent.status == "succeeded" and index % 13 == 0:
                services.refund_create(
                    merchant=merchant,
                    payment_id=intent.public_id,
                    amount=intent.amount // 4,
                    idempotency_key=f"demo-refund-{index}",
                    reason="demo partial refund",
                )
            elif intent.status == "succeeded" and index % 29 == 0:
                services.payment_cancel(
                    merchant=merchant,
                    payment_id=intent.public_id,
                    idempotency_key=f"demo-void-{index}",
                    reason="demo void",
                )
            run.advance(1)
