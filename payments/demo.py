"""Demo payments: channels over the simulator, demo merchants, routing rules, fees, risk rules, and payments made
through the payment services and the channel simulator — card captures and manual captures, partial and full refunds,
same-day voids, declines, test-mode payments, payments held for risk review, a payment paid partly with points, and
payment codes, agreements and wallet balances.

Every demo payment goes the one way a merchant's does (there is no second, bulk path for payments), so our attempts,
the ledger and the simulator's journal and statements agree by construction. What makes seeding quick is how many:
each payment costs its services' own database work, about six times the simulator's round trip, so the demo makes
about a hundred — every kind, not a volume. Idempotent: stable idempotency keys, and each part is skipped once made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.calendar import SHANGHAI
from core.errors import Conflict
from core.jobs import job_run
from members.models import Card, LinkedAccount, MemberBank
from merchants.models import Merchant
from merchants.services import merchant_create

from . import services, statements
from .connectors import get_connector
from .fees import fee_schedule_create
from .methods import agreement_grant, agreement_request_create, agreement_request_grant, payment_code_generate
from .models import (
    AgreementRequest,
    Channel,
    ChannelErrorPolicy,
    Dispute,
    FeeSchedule,
    PaymentAttempt,
    PaymentIntent,
    Refund,
    RiskBlock,
    RiskRule,
    RoutingRule,
    StatementImport,
)
from .points import points_affordable, program_of_bank

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
HISTORY = {"small": 80, "large": 20_000}  # card payments, each index its own kind (see `_history_payment`)
METHODS = {"codes": 8, "agreements": 3, "wallets": 6}  # payments by code, by agreement, from a wallet
AMOUNTS = (1_280, 2_590, 4_800, 8_800, 12_900, 26_600, 58_800, 128_800, 9_990, 36_000)
DECLINE_ENDINGS = (51, 52, 56)  # the simulator's triggers: do_not_honour, insufficient_funds, suspected_fraud
REVIEW_AMOUNT = 2_680_000  # above the demo's single-payment review limit (2,000,000), below its block (5,000,000)

Step = Callable[[], object]


def seed_merchants(ctx: Any) -> list[Merchant]:
    """Channels, merchants, routing, fees and risk rules: what the payments need, and what the merchants' demo
    promotions are set up on before the payments are made. Idempotent."""
    banks = {bank.code: bank for bank in MemberBank.objects.all()}
    if not {"HXSB", "JHBK", "MFBK", "JHCC", "YYPAY"} <= set(banks):
        return []
    channels = _channels(banks)
    merchants = _merchants(banks)
    _rules(channels, merchants)
    _fees(merchants)
    _risk()
    return merchants


def seed_payments(ctx: Any) -> None:
    merchants = seed_merchants(ctx)
    if not merchants:
        return
    _agreement_requests(ctx, merchants)
    # The demo login's own cases first: its statement shows the promotions before the history spends their budgets.
    steps = _cases(ctx, merchants) + _history(ctx, merchants) + _methods(merchants)
    if not steps:
        return
    connector = get_connector("simulator")
    if not _wait_for(connector):
        if ctx.out is not None:
            ctx.out.write(
                f"  the channel simulator is not reachable at {settings.SIMULATOR['URL']}: demo payments skipped "
                "(start it with `python -m simulator`, or use `make run`)\n"
            )
        return
    remotes = [channel.remote_id for channel in Channel.objects.filter(connector="simulator")]
    for remote in remotes:  # the simulated channels answer at once while seeding
        connector.set_faults(remote, latency_ms=0, latency_jitter_ms=0)  # type: ignore[attr-defined]
    try:
        with job_run("payments.seed_demo", period=ctx.scale, total=len(steps), echo=ctx.out) as run:
            for step in steps:
                step()
                run.advance(1)
    finally:
        for remote in remotes:
            connector.set_faults(remote, latency_ms=30, latency_jitter_ms=30)  # type: ignore[attr-defined]


def _channels(banks: dict[str, MemberBank]) -> dict[str, Channel]:
    existing = {channel.code: channel for channel in Channel.objects.all()}
    for code, name, kind, bank_code, remote, methods, currencies, fee in CHANNELS:
        # Each live channel has a sandbox twin for test-mode payments (here both reach the simulator).
        for twin, sandbox in ((code, False), (f"{code}-sandbox", True)):
            if twin not in existing:
                existing[twin] = services.channel_create(
                    code=twin,
                    name=f"{name} (sandbox)" if sandbox else name,
                    kind=kind,
                    acquirer=banks[bank_code],
                    methods=methods,
                    currencies=currencies,
                    connector="simulator",
                    remote_id=remote,
                    fee_percent=Decimal(fee),
                    sandbox=sandbox,
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


def _fees(merchants: list[Merchant]) -> None:
    """A default MDR of 0.60 % (issuer 60 %, acquirer 25 %, channel 10 %, alliance 5 %), a cheaper rate for codes and
    balances, a merchant's own rate, and last year's version so the admin shows the history."""
    if FeeSchedule.objects.exists():
        return
    now = timezone.now()
    last_year = now - dt.timedelta(days=365)
    split: dict[str, Any] = {
        "issuer_share": Decimal(60),
        "acquirer_share": Decimal(25),
        "channel_share": Decimal(10),
        "alliance_share": Decimal(5),
    }
    fee_schedule_create(mdr_percent=Decimal("0.70"), effective_from=last_year, **split)
    fee_schedule_create(mdr_percent=Decimal("0.60"), effective_from=now - dt.timedelta(days=30), **split)
    for method in ("payment_code", "balance"):
        fee_schedule_create(mdr_percent=Decimal("0.38"), method=method, effective_from=last_year, **split)
    fee_schedule_create(mdr_percent=Decimal("0.30"), fixed=10, merchant=merchants[0], effective_from=last_year, **split)


def _risk() -> None:
    if RiskRule.objects.exists():
        return
    rules = [
        (
            "单笔限额 标准卡 / standard card single limit",
            "amount",
            "card",
            "day",
            5_000_000,
            "block",
            "",
            "standard",
            None,
        ),
        ("单笔复核 / large single payment review", "amount", "card", "day", 2_000_000, "review", "", "", None),
        (
            "付款码日限额 基础认证 / code daily cap, basic",
            "total",
            "cardholder",
            "day",
            100_000,
            "block",
            "payment_code",
            "",
            1,
        ),
        (
            "付款码日限额 实名 / code daily cap, verified",
            "total",
            "cardholder",
            "day",
            500_000,
            "block",
            "payment_code",
            "",
            2,
        ),
        ("每分钟笔数 / per-card velocity", "count", "card", "minute", 5, "review", "", "", None),
        ("每日笔数 / per-card daily count", "count", "card", "day", 60, "block", "", "", None),
        ("商户小时金额 / merchant hourly volume", "total", "merchant", "hour", 50_000_000, "review", "", "", None),
    ]
    for name, kind, subject, window, threshold, action, method, tier, level in rules:
        RiskRule.objects.create(
            name=name,
            kind=kind,
            subject=subject,
            window=window,
            threshold=threshold,
            action=action,
            method=method,
            card_tier=tier,
            verification_level=level,
        )
    RiskBlock.objects.get_or_create(kind="device", value="demo-stolen-phone", defaults={"reason": "demo: reported"})


def _history(ctx: Any, merchants: list[Merchant]) -> list[Step]:
    """The card payments still to make: the history resumes where an interrupted run stopped."""
    target = HISTORY.get(ctx.scale, HISTORY["small"])
    done = PaymentIntent.objects.filter(metadata__demo=True).count()
    if done >= target:
        return []
    cards = list(
        Card.objects.filter(status="active").select_related("cardholder", "product", "bank").order_by("pk")[:2_000]
    )
    if not cards:
        return []
    return [partial(_history_payment, index, merchants, cards) for index in range(done, target)]


def _history_payment(index: int, merchants: list[Merchant], cards: list[Card]) -> None:
    """Payment `index` of the history; its index decides its kind: a decline every 37th (by the simulator's amount
    triggers), a manual capture every 11th (a third of them left for the merchant to capture), a partial refund
    every 13th, a full refund every 23rd, a same-day void every 29th, and a tenth in test mode (the sandbox of the
    printed test keys)."""
    rng = random.Random(2026_00000 + index)  # noqa: S311 - demo data, the same for an index on every run
    merchant = merchants[index % len(merchants)]
    card = cards[rng.randrange(len(cards))]
    amount = rng.choice(AMOUNTS)
    if index % 37 == 0:
        amount = amount // 100 * 100 + DECLINE_ENDINGS[index // 37 % len(DECLINE_ENDINGS)]
    manual = index % 11 == 0
    livemode = index % 10 != 7
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
        livemode=livemode,
    )
    if manual and intent.status == "requires_capture" and not intent.risk_review and index % 3 != 0:
        # (payments held for risk review stay in the operators' review queue)
        services.payment_capture(
            merchant=merchant, payment_id=intent.public_id, idempotency_key=f"demo-cap-{index}", livemode=livemode
        )
    elif intent.status == "succeeded" and (index % 13 == 0 or index % 23 == 0):
        services.refund_create(
            merchant=merchant,
            payment_id=intent.public_id,
            amount=intent.amount // 4 if index % 13 == 0 else None,
            idempotency_key=f"demo-refund-{index}",
            reason="demo partial refund" if index % 13 == 0 else "demo refund",
            livemode=livemode,
        )
    elif intent.status == "succeeded" and index % 29 == 0:
        services.payment_cancel(
            merchant=merchant,
            payment_id=intent.public_id,
            idempotency_key=f"demo-void-{index}",
            reason="demo void",
            livemode=livemode,
        )


def _cases(ctx: Any, merchants: list[Merchant]) -> list[Step]:
    """What the history leaves to chance: two large payments held for risk review (by cardholders other than the
    demo login, whose day they would push over its payment-code limit), the demo login's payment paid partly with
    points, and its statement's payments and refunds (`STATEMENT_CASES`). Each is made once (`metadata.demo_case`)."""
    made = set(
        PaymentIntent.objects.filter(metadata__has_key="demo_case").values_list("metadata__demo_case", flat=True)
    )
    username = getattr(ctx, "demo_cardholder", "")
    active = Card.objects.filter(status="active").select_related("cardholder", "bank")
    reviewed = list(active.exclude(cardholder__user__username=username).order_by("-pk")[:2])
    own = active.filter(cardholder__user__username=username).order_by("pk").first() if username else None
    shop, travel, noodle = merchants[-1], merchants[3], merchants[0]
    steps: list[Step] = [
        partial(_review_case, n, merchant, card)
        for n, (merchant, card) in enumerate(zip((travel, shop), reviewed, strict=False))
        if f"review-{n}" not in made
    ]
    if own is not None and "points" not in made:
        steps.append(partial(_points_case, noodle, own))
    own_cards = list(active.filter(cardholder__user__username=username).order_by("pk")) if username else []
    if own_cards:
        by_code = {merchant.code: merchant for merchant in merchants}
        for n, (code, amount, refund) in enumerate(STATEMENT_CASES):
            if f"statement-{n}" not in made and code in by_code:
                steps.append(partial(_statement_case, n, by_code[code], own_cards[n % len(own_cards)], amount, refund))
    return steps


# The demo login's statement (统一账单): (merchant, amount, refund) on its cards in turn, at three banks — the
# merchants' promotions price them (¥20 off ¥200 at the noodle house, 20 % off fresh food, double points on fuel, a
# random discount on travel, triple points on a first order), one refunded in part (a quarter) and one in full.
STATEMENT_CASES = (
    ("DEMO-NOODLE", 26_800, ""),
    ("DEMO-GROCER", 8_800, "part"),
    ("DEMO-FUEL", 30_000, ""),
    ("DEMO-TRAVEL", 128_800, "full"),
    ("DEMO-SHOP", 15_900, ""),
    ("DEMO-NOODLE", 4_500, ""),
)


def _statement_case(n: int, merchant: Merchant, card: Card, amount: int, refund: str) -> None:
    intent = services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        amount=amount,
        currency="CNY",
        idempotency_key=f"demo-case-statement-{n}",
        confirm=True,
        metadata={"demo_case": f"statement-{n}"},
        description="demo",
    )
    if refund and intent.status == PaymentIntent.Status.SUCCEEDED:
        services.refund_create(
            merchant=merchant,
            payment_id=intent.public_id,
            amount=intent.amount // 4 if refund == "part" else None,
            idempotency_key=f"demo-case-statement-refund-{n}",
            reason="demo: returned",
        )


def _review_case(n: int, merchant: Merchant, card: Card) -> None:
    """Above the review limit: authorised, not captured, waiting in the operators' risk review queue."""
    services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        amount=REVIEW_AMOUNT + n * 100_000,
        currency="CNY",
        idempotency_key=f"demo-case-review-{n}",
        confirm=True,
        metadata={"demo_case": f"review-{n}"},
        description="demo: a large payment held for review",
    )


def _points_case(merchant: Merchant, card: Card) -> None:
    """Part of the amount paid with the issuer's points (积分抵现), as many as the wallet has up to 2,000."""
    amount = 12_900
    program = program_of_bank(card.bank_id)
    affordable = points_affordable(cardholder_id=card.cardholder_id, program=program, amount=amount) if program else 0
    points = min(2_000, affordable)
    services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        amount=amount,
        currency="CNY",
        use_points=points,
        idempotency_key="demo-case-points",
        confirm=True,
        metadata={"demo_case": "points"},
        description="demo: paid partly with points",
    )


def _methods(merchants: list[Merchant]) -> list[Step]:
    """Payments by payment code and by agreement (one card each), and from linked wallets."""
    if PaymentIntent.objects.filter(metadata__demo_method=True).exists():
        return []
    cards = list(Card.objects.filter(status="active").select_related("cardholder").order_by("pk")[: METHODS["codes"]])
    wallets = list(
        LinkedAccount.objects.filter(status="active", kind="wallet")
        .select_related("cardholder")
        .order_by("pk")[: METHODS["wallets"]]
    )
    shop, others = merchants[-1], merchants[:-1]  # the online shop routes to card acquirers only: wallets go elsewhere
    steps: list[Step] = [partial(_code_payment, i, card, merchants) for i, card in enumerate(cards)]
    steps += [partial(_agreement_payment, i, card, shop) for i, card in enumerate(cards[: METHODS["agreements"]])]
    steps += [partial(_wallet_payment, i, account, others) for i, account in enumerate(wallets)]
    return steps


def _agreement_requests(ctx: Any, merchants: list[Merchant]) -> None:
    """The online shop's agreement requests to the demo cardholder: one granted (its token not yet collected), one
    pending whose page the cardholder can open from the admin or the printed URL."""
    shop = merchants[-1]
    if AgreementRequest.objects.filter(merchant=shop).exists():
        return
    card = (
        Card.objects.filter(cardholder__user__username=ctx.demo_cardholder, status="active").order_by("pk").first()
        if ctx.demo_cardholder
        else None
    )
    if card is None:
        return
    back = "http://127.0.0.1:8000/demo-shop/agreements/done"
    granted = agreement_request_create(
        merchant=shop,
        livemode=False,
        currency="CNY",
        limit_per_payment=30_000,
        limit_per_month=150_000,
        purpose="Weekly grocery box",
        return_url=back,
    )
    agreement_request_grant(cardholder=card.cardholder, request_id=granted.public_id, card=card)
    pending = agreement_request_create(
        merchant=shop,
        livemode=False,
        currency="CNY",
        limit_per_payment=10_000,
        limit_per_month=50_000,
        purpose="Coffee subscription",
        return_url=back,
    )
    # A week instead of an hour, so that the demo still shows it pending tomorrow.
    AgreementRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now() + dt.timedelta(days=7))


def _code_payment(index: int, card: Card, merchants: list[Merchant]) -> None:
    code = payment_code_generate(cardholder=card.cardholder, card=card)
    services.payment_create(
        merchant=merchants[index % len(merchants)],
        payment_code=code.code,
        amount=1_800 + index * 100,
        currency="CNY",
        idempotency_key=f"demo-code-{index}",
        confirm=True,
        metadata={"demo_method": True},
    )


def _agreement_payment(index: int, card: Card, shop: Merchant) -> None:
    granted = agreement_grant(
        cardholder=card.cardholder, merchant=shop, card=card, limit_per_payment=50_000, limit_per_month=200_000
    )
    services.payment_create(
        merchant=shop,
        agreement_token=granted.token,
        amount=2_990,
        currency="CNY",
        idempotency_key=f"demo-agreement-{index}",
        confirm=True,
        metadata={"demo_method": True},
    )


def _wallet_payment(index: int, account: LinkedAccount, merchants: list[Merchant]) -> None:
    channel = Channel.objects.filter(kind="wallet", acquirer=account.bank_id, sandbox=False).first()
    if channel is None:
        return
    try:
        get_connector("simulator").open_account(  # type: ignore[attr-defined]
            channel.remote_id, account.reference, str(account.cardholder.display_name), 50_000
        )
    except ConnectionError:
        return
    services.payment_create(
        merchant=merchants[index % len(merchants)],
        cardholder=account.cardholder,
        linked_account=account,
        amount=3_500 + index * 10,
        currency="CNY",
        idempotency_key=f"demo-balance-{index}",
        confirm=True,
        metadata={"demo_method": True},
    )


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


# --- settlement: the history settled over a holiday and a 调休 working weekend, batches in every state ------------

# Merchant roles in the settlement demo: paid on time; its account returns payouts (the simulator's trigger: an
# account ending 9951 is closed); frozen (its batches held); T+0 with a medium risk grade (a reserve held); a
# negative day carried forward, and no settlement account yet (its batches wait, settled and unpaid).
SETTLEMENT_ROLES = {
    "DEMO-NOODLE": "paid",
    "DEMO-GROCER": "returned",
    "DEMO-FUEL": "frozen",
    "DEMO-TRAVEL": "t0",
    "DEMO-SHOP": "carried",
}
PAYOUT_RESULT_WAIT = 4.0  # seconds: the simulator answers a payout as paid or returned after its delay (3 s)


def settlement_days(today: dt.date) -> list[dt.date]:
    """The business days the demo's history is spread over: from the working days before the latest public holiday
    that ended before `today` to the first working day after the latest 调休 working weekend day, so that the batches
    show a holiday (nothing settles on it) and a weekend day that settles like any working day."""
    from core.calendar import is_working_day, load_calendar, next_working_day

    calendar = load_calendar()
    holidays = sorted(day for day in calendar.holidays if day < today - dt.timedelta(days=2))
    workdays = sorted(day for day in calendar.workdays if day < today - dt.timedelta(days=2))
    if not holidays or not workdays:
        start, end = today - dt.timedelta(days=10), today - dt.timedelta(days=2)
    else:
        block_end = holidays[-1]
        block_start = block_end
        while block_start - dt.timedelta(days=1) in calendar.holidays:
            block_start -= dt.timedelta(days=1)
        start = min(block_start, workdays[-1]) - dt.timedelta(days=3)
        end = next_working_day(max(block_end, workdays[-1]))
    days = []
    day = start
    while day <= end:
        if is_working_day(day):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def seed_settlements(ctx: Any) -> None:
    """Settles the demo's live history: its payments and refunds are dated over `settlement_days` (the demo's only
    bulk write: what a merchant captured on which day), then each business day is settled by the settlement run, the
    payouts made and sent through the simulator, and their results read. Idempotent: skipped once a batch exists."""
    from core.calendar import next_working_day
    from core.crypto import encrypt

    from .models import Payout, SettlementBatch

    if SettlementBatch.objects.exists():
        return
    merchants = {merchant.code: merchant for merchant in Merchant.objects.filter(code__in=SETTLEMENT_ROLES)}
    if len(merchants) < len(SETTLEMENT_ROLES) or not _wait_for(get_connector("simulator"), seconds=3):
        return
    today = timezone.localdate()
    days = [day for day in settlement_days(today) if next_working_day(day) <= today]
    if len(days) < 3:
        return
    role = {code: SETTLEMENT_ROLES[code] for code in merchants}
    # Terms: accounts (one that returns payouts, none for the merchant still waiting), a freeze, T+0 with a reserve.
    from merchants.models import SettlementAccount

    for code, merchant in merchants.items():
        if role[code] != "carried" and not SettlementAccount.objects.filter(merchant=merchant).exists():
            last4 = "9951" if role[code] == "returned" else f"{4100 + merchant.pk % 900:04d}"
            SettlementAccount.objects.create(
                merchant=merchant,
                account_name=merchant.legal_name,
                bank_name=merchant.sponsor_bank.name_zh,
                account_encrypted=encrypt(f"62220000000000{last4}"),
                account_last4=last4,
            )
    Merchant.objects.filter(code="DEMO-FUEL").update(
        payouts_frozen=True, frozen_reason="演示：拒付调查中 / demo: chargebacks under review"
    )
    Merchant.objects.filter(code="DEMO-TRAVEL").update(settlement_cycle="t0", risk_grade="medium")
    sponsors = {merchant.sponsor_bank_id for merchant in merchants.values()}
    Channel.objects.filter(acquirer_id__in=sponsors, sandbox=False, connector="simulator").update(payouts=True)
    _date_history(merchants, days)
    # Settle every business day but the last, pay, read the results; then the last, paid but not yet answered.
    for index, day in enumerate(days):
        services.settle("t1", day.isoformat())
        for window in settings.SETTLEMENT_T0_WINDOWS:
            services.settle("t0", f"{day.isoformat()}T{window}")
        if index == len(days) - 2:
            services.payouts_create()
            services.payouts_send()
            time.sleep(PAYOUT_RESULT_WAIT)
            services.payouts_poll(inquire_after=dt.timedelta(0))
    services.payouts_create()
    services.payouts_send()
    if ctx.out is not None:
        counts = SettlementBatch.objects.values_list("status").order_by()
        shown = dict.fromkeys(SettlementBatch.Status.values, 0)
        for (status,) in counts:
            shown[status] += 1
        ctx.out.write(
            f"  settlement: {sum(shown.values())} batches over {days[0]}–{days[-1]} "
            f"({', '.join(f'{n} {status}' for status, n in shown.items() if n)}), "
            f"{Payout.objects.count()} payouts, {Refund.objects.filter(business_date__isnull=False).count()} refunds\n"
        )


def _date_history(merchants: dict[str, Merchant], days: list[dt.date]) -> None:
    """Spreads the live captured history over `days`: payment i of a merchant on day i mod n, at noon plus i minutes;
    a refund on the next business day. The carried merchant has all its payments on the first day but one, refunded
    in full on the second day, where it sells nothing: a negative day carried into the third."""

    for code, merchant in merchants.items():
        payments = list(
            PaymentIntent.objects.filter(
                merchant=merchant, livemode=True, amount_captured__gt=0, status=PaymentIntent.Status.SUCCEEDED
            ).order_by("pk")
        )
        carried = SETTLEMENT_ROLES[code] == "carried"
        if carried and payments:
            first = payments[0]
            if first.amount_refunded < first.amount_captured:
                services.refund_create(
                    merchant=merchant,
                    payment_id=first.public_id,
                    idempotency_key=f"demo-carry-refund-{first.pk}",
                    reason="demo: returned goods",
                )
        for index, payment in enumerate(payments):
            day = _history_day(index, days, carried=carried)
            at = dt.datetime.combine(day, dt.time(12, 0), tzinfo=SHANGHAI) + dt.timedelta(minutes=index)
            # The keys that name the payment follow its new time (ON UPDATE CASCADE, payments/migrations/0047): its
            # attempts and refunds move to that month's partitions, the other rows take the same time.
            PaymentIntent.objects.filter(pk=payment.pk).update(
                created_at=at, authorized_at=at, captured_at=at, business_date=day
            )
            refund_day = days[1] if carried and index == 0 else days[min(days.index(day) + 1, len(days) - 1)]
            refund_at = dt.datetime.combine(refund_day, dt.time(15, 0), tzinfo=SHANGHAI)
            Refund.objects.filter(intent=payment, intent_created_at=at, status=Refund.Status.SUCCEEDED).update(
                created_at=refund_at, completed_at=refund_at, business_date=refund_day
            )


def _history_day(index: int, days: list[dt.date], *, carried: bool) -> dt.date:
    """The business day of a merchant's `index`-th payment: round the days, or for the carried merchant the first
    and the third only (the second has nothing but a refund)."""
    if not carried:
        return days[index % len(days)]
    return days[2] if index % 2 else days[0]


# --- the demo cardholder's year: spending at a glance has twelve months to show --------------------------------

# (months ago, which of the demo login's cards, merchant code, amount in fen, refunded in fen): every merchant (so
# every category the demo has) and every card (so every bank), and a partial refund. This month has the login's
# payments of the history (dated over the settlement days): one made here and left at today would be its channel's
# latest capture, and the next run's reconciliation would import that day's statement.
SPENDING_HISTORY = (
    (11, 0, "DEMO-GROCER", 23_480, 0),
    (10, 1, "DEMO-NOODLE", 8_650, 0),
    (9, 2, "DEMO-TRAVEL", 186_000, 0),
    (8, 0, "DEMO-FUEL", 35_000, 0),
    (7, 1, "DEMO-SHOP", 45_990, 12_000),
    (6, 2, "DEMO-NOODLE", 12_800, 0),
    (5, 0, "DEMO-GROCER", 31_260, 0),
    (4, 1, "DEMO-TRAVEL", 98_800, 0),
    (3, 2, "DEMO-FUEL", 40_000, 0),
    (2, 0, "DEMO-SHOP", 26_900, 0),
    (1, 1, "DEMO-NOODLE", 15_600, 0),
)


def seed_spending_history(ctx: Any) -> None:
    """Eleven months of the demo login's own payments, made through the payment services and the simulator like every
    demo payment, then dated back to the 12th of their month (19:30, Shanghai), their refund a week later. Runs
    after settlement and clearing, which date the rest of the history over recent business days: these months are
    before that history and are never settled (the settlement runs' catch-up reaches back a few working days). A
    payment the risk rules hold is released by the alliance operator. Idempotent: each is made once
    (`metadata.demo_spending`), and dating it again writes the same values."""
    username = getattr(ctx, "demo_cardholder", "")
    cards = list(
        Card.objects.filter(cardholder__user__username=username, status="active").order_by("pk") if username else []
    )
    merchants = {merchant.code: merchant for merchant in Merchant.objects.filter(code__in=SETTLEMENT_ROLES)}
    if not cards or len(merchants) < len(SETTLEMENT_ROLES):
        return
    made = set(
        PaymentIntent.objects.filter(metadata__has_key="demo_spending").values_list(
            "metadata__demo_spending", flat=True
        )
    )
    todo = [index for index in range(len(SPENDING_HISTORY)) if index not in made]
    if todo and not _wait_for(get_connector("simulator"), seconds=3):
        return
    reviewer = get_user_model().objects.filter(username="alliance").first()
    for index in todo:
        months_ago, card_index, code, amount, refund = SPENDING_HISTORY[index]
        card, merchant = cards[card_index % len(cards)], merchants[code]
        intent = services.payment_create(
            merchant=merchant,
            cardholder=card.cardholder,
            card=card,
            amount=amount,
            currency="CNY",
            idempotency_key=f"demo-spending-{index}",
            confirm=True,
            metadata={"demo_spending": index},
            description="demo",
        )
        if intent.risk_review and reviewer is not None:
            # A quick run makes these in the minute of the login's other demo payments: the per-card velocity rule
            # holds them, and the alliance operator releases them, as the review queue is there for.
            intent = services.risk_review_approve(payment_id=intent.public_id, actor=reviewer)
        if refund and intent.status == PaymentIntent.Status.SUCCEEDED:
            services.refund_create(
                merchant=merchant,
                payment_id=intent.public_id,
                amount=refund,
                idempotency_key=f"demo-spending-refund-{index}",
                reason="demo: returned goods",
            )
    today = timezone.localdate()
    for payment in PaymentIntent.objects.filter(metadata__has_key="demo_spending", captured_at__isnull=False):
        months_ago = SPENDING_HISTORY[int(payment.metadata["demo_spending"])][0]
        _date_spending(payment, _months_back(today, months_ago))
    if ctx.out is not None and todo:
        ctx.out.write(
            f"  spending history: {len(todo)} payments by {username} over the eleven months before this one\n"
        )


def _months_back(today: dt.date, months: int) -> dt.date:
    """The 12th of the month `months` before `today`'s."""
    index = today.year * 12 + today.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 12)


def _date_spending(payment: PaymentIntent, day: dt.date) -> None:
    """Dates `payment` back to `day`, 19:30 (Shanghai), and its refunds a week later, each with the business date of
    its day (the next working day's when it is a day off)."""
    from core.calendar import is_working_day, next_working_day

    def business(day: dt.date) -> dt.date:
        return day if is_working_day(day) else next_working_day(day)

    at = dt.datetime.combine(day, dt.time(19, 30), tzinfo=SHANGHAI)
    PaymentIntent.objects.filter(pk=payment.pk).update(  # its rows follow (ON UPDATE CASCADE)
        created_at=at, authorized_at=at, captured_at=at, business_date=business(day)
    )
    refunded_at = at + dt.timedelta(days=7)
    Refund.objects.filter(intent=payment, intent_created_at=at, status=Refund.Status.SUCCEEDED).update(
        created_at=refunded_at, completed_at=refunded_at, business_date=business(refunded_at.date())
    )


# --- an archived month of payments: two test-mode payments of a year ago, detached as the partitions job does -----

# (amount, refunded) of the archived payments, in fen; a quarter of the second refunded.
ARCHIVED_PAYMENTS = ((8_800, 0), (26_600, 6_650))
# The merchant whose test key the demo prints first (the keys are printed by merchant code): its sandbox has the
# history's test-mode payments, and a test key sees test-mode payments only.
ARCHIVED_MERCHANT = "DEMO-FUEL"


def seed_archived_payments(ctx: Any, *, months_ago: int) -> None:
    """Two test-mode card payments of the demo merchant whose test key is printed first, made through the payment
    services and the simulator like every demo payment (captured; the second refunded in part), dated back to the 15th
    and 20th of the month `months_ago` months before this one (docs/scaling.md, "Partitioning by month"), and that
    month of every payments table detached to its archive table with the job's own functions, referrers first
    (`PARTITIONED`'s order): *Platform › Archived months* lists them, and the merchant asking the API for one of them
    with its test key is told that its month was archived (`payment_archived`, found in the archive tables). Their
    events stay live. Test mode: no points, fee splits or settlement refer to them.
    Idempotent: nothing once a month of payments is archived (a later run, whatever the month, dates nothing again)."""
    from django.db import connection, transaction

    from core.models import ArchivedMonth
    from core.partitions import PARTITIONED, add_months, month_start, partition_detach, partitions_create

    if ArchivedMonth.objects.filter(table=PaymentIntent._meta.db_table).exists():
        return
    merchant = Merchant.objects.filter(code=ARCHIVED_MERCHANT).first()
    username = getattr(ctx, "demo_cardholder", "")
    # A demo cardholder's card other than the demo login's (whose cards the per-card velocity rule watches).
    card = (
        Card.objects.filter(status="active")
        .exclude(cardholder__user__username=username)
        .select_related("cardholder")
        .order_by("pk")
        .first()
    )
    if merchant is None or card is None or not _wait_for(get_connector("simulator"), seconds=3):
        return
    payments = []
    for n, (amount, refund) in enumerate(ARCHIVED_PAYMENTS):
        intent = services.payment_create(
            merchant=merchant,
            cardholder=card.cardholder,
            card=card,
            amount=amount,
            currency="CNY",
            idempotency_key=f"demo-archived-{n}",
            confirm=True,
            metadata={"demo_archived": n},
            description="demo",
            livemode=False,
        )
        if refund and intent.status == PaymentIntent.Status.SUCCEEDED:
            services.refund_create(
                merchant=merchant,
                payment_id=intent.public_id,
                amount=refund,
                idempotency_key=f"demo-archived-refund-{n}",
                reason="demo: returned goods",
                livemode=False,
            )
        payments.append(intent)
    succeeded = PaymentIntent.objects.filter(pk__in=[p.pk for p in payments], status=PaymentIntent.Status.SUCCEEDED)
    refunds = Refund.objects.filter(intent__in=payments)
    if succeeded.count() < len(payments) or refunds.exclude(status=Refund.Status.SUCCEEDED).exists():
        return  # only payments whose story is over are archived (a refund's late answer must find its row)
    month = add_months(month_start(timezone.localdate()), -months_ago)
    tables = [table for table in PARTITIONED if table.startswith("payments_")]  # referrers first
    with transaction.atomic():
        for n, payment in enumerate(payments):
            _date_spending(payment, month.replace(day=15 + 5 * n))
        # PostgreSQL alters no table whose rows have key checks pending: make them now, and defer them again after.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in tables:
            partitions_create(table, month, 1)  # the month's rows move out of the DEFAULT partition
        archived = [name for name in (partition_detach(table, month) for table in tables) if name]
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    if ctx.out is not None and archived:
        ctx.out.write(
            f"  archived month: {month:%Y-%m} of payments, in {archived[-1]} and {len(archived) - 1} more tables; "
            f"{merchant.code}'s test key asking for {payments[-1].public_id} gets 404 payment_archived\n"
        )


# --- reconciliation (对账) ------------------------------------------------------------------------------------------

# The layout each simulated channel writes its statement in (as simulator/channels.json names it).
STATEMENT_FORMATS = {
    "acq-unionpay-a": "csv_v1",
    "acq-bank-b": "csv_v2",
    "acq-global-c": "fixed_v1",
    "debit-icbc": "csv_v2",
    "debit-cmb": "fixed_v1",
    "wallet-x": "csv_v1",
    "prepaid-x": "csv_v2",
    "ecny-x": "fixed_v1",
}


def seed_reconciliation(ctx: Any) -> None:
    """Statements for the demo's busiest channel days, written from the payments as the channel would, with one
    difference of every class injected (a capture left out, one the channel has and we do not, an amount and a
    status that differ, a row twice, a refund left out), imported and matched: the exceptions queue has one of each.
    Idempotent: skipped once a statement was imported (the steps after this one add payments to the channels' days,
    and the same days written again would be corrected statements)."""
    if StatementImport.objects.exists():
        return
    for remote, layout in STATEMENT_FORMATS.items():
        Channel.objects.filter(connector="simulator", remote_id=remote).update(statement_format=layout)
    channels = Channel.objects.filter(connector="simulator", sandbox=False).order_by("pk")
    busiest = sorted(
        ((PaymentIntent.objects.filter(channel=channel, captured_at__isnull=False).count(), channel.pk, channel)
         for channel in channels),
        key=lambda item: (-item[0], item[1]),
    )[:2]  # fmt: skip
    for count, _pk, channel in busiest:
        if count < 6:
            continue
        day = _statement_day(channel)
        rows = _statement_rows(channel, day)
        text = statements.render(channel.statement_format, remote_key(channel), day, _with_differences(rows, day))
        result = services.statement_import(channel=channel, day=day, text=text, fmt=channel.statement_format)
        if ctx.out is not None:
            counts = {name: entry["count"] for name, entry in result.summary.items() if entry["count"]}
            ctx.out.write(f"  statement of {channel.code} for {day}: {result.statement.rows} rows, {counts}\n")


def remote_key(channel: Channel) -> str:
    return channel.remote_id or channel.code


def _statement_day(channel: Channel) -> dt.date:
    """The channel's business date of its latest capture (its own calendar: the cut-off rolls the day over)."""
    latest = PaymentIntent.objects.filter(channel=channel, captured_at__isnull=False).order_by("-captured_at").first()
    assert latest is not None
    assert latest.captured_at is not None
    local = latest.captured_at.astimezone(SHANGHAI)
    return local.date() + dt.timedelta(days=1 if local.time() >= channel.cutoff else 0)


def _statement_rows(channel: Channel, day: dt.date) -> list[statements.Row]:
    start, end = services.statement_window(channel, day)
    rows = []
    payments = PaymentIntent.objects.filter(channel=channel, captured_at__gte=start, captured_at__lt=end)
    for intent in payments.order_by("captured_at", "pk"):
        attempt = PaymentAttempt.objects.of(intent).filter(status__in=["captured", "reversed"], error_code="").first()
        if attempt is None or intent.amount_captured <= 0:
            continue
        rows.append(
            statements.Row(
                "capture",
                attempt.reference,
                attempt.channel_reference,
                "",
                intent.currency,
                intent.amount_captured,
                0,
                "success",
                intent.captured_at,
            )
        )
        if attempt.status == "reversed" and intent.canceled_at is not None and start <= intent.canceled_at < end:
            rows.append(
                statements.Row(
                    "reversal",
                    attempt.reference,
                    attempt.channel_reference,
                    "",
                    intent.currency,
                    -intent.amount_captured,
                    0,
                    "success",
                    intent.canceled_at,
                )
            )
    refunds = Refund.objects.filter(
        intent__channel=channel, status="succeeded", completed_at__gte=start, completed_at__lt=end
    ).exclude(channel_reference__startswith="recon:")
    for refund in refunds.select_related("intent").order_by("completed_at", "pk"):
        rows.append(
            statements.Row(
                "refund",
                refund.reference,
                refund.channel_reference,
                "",
                refund.intent.currency,
                -refund.amount,
                0,
                "success",
                refund.completed_at,
            )
        )
    return rows


def _with_differences(rows: list[statements.Row], day: dt.date) -> list[statements.Row]:
    """The rows with one difference of each class, on fixed rows, so the same payments give the same file."""
    captures = [index for index, row in enumerate(rows) if row.kind == "capture"]
    out = list(rows)
    if len(captures) >= 5:
        first, second, third, fourth = captures[0], captures[1], captures[2], captures[3]
        out[second] = out[second]._replace(amount=out[second].amount - 100)  # amount mismatch
        out[third] = out[third]._replace(status="failed")  # status mismatch
        out.insert(fourth + 1, out[fourth])  # duplicate
        del out[first]  # missing at the channel
    refunds = [index for index, row in enumerate(out) if row.kind == "refund"]
    if refunds:
        del out[refunds[0]]  # a refund missing at the channel
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=SHANGHAI)
    out.append(statements.Row("capture", "x-1", "sim-x-1", "", "CNY", 8_800, 33, "success", noon))  # not ours
    return out


# --- disputes -------------------------------------------------------------------------------------------------------

# (the demo's name for it, kind, share of the payment disputed (percent), the end it is brought to). Every one is
# raised at the channel simulator, as a card scheme would, and arrives through the dispute poll.
DEMO_DISPUTES = (
    ("demo-dp-open", "chargeback", 100, "open"),
    ("demo-dp-evidence", "retrieval", 100, "evidence_submitted"),
    ("demo-dp-won", "chargeback", 100, "won"),
    ("demo-dp-lost", "chargeback", 50, "lost"),
    ("demo-dp-accepted", "error_adjustment", 10, "accepted"),
    ("demo-dp-expired", "chargeback", 100, "expired"),
)
# The answered retrieval is decided by the channel this long after the answer: it stays "evidence submitted".
DEMO_DECISION_MS = 30 * 24 * 3600 * 1000


def seed_disputes(ctx: Any) -> None:
    """A dispute in every state, on the demo's live captured payments not refunded, each raised at the channel
    simulator (`POST /v1/admin/disputes`) and brought in by the dispute poll as a channel delivers it: open, evidence
    submitted (a retrieval request answered; the channel decides it a month later), won and lost (decided by the
    channel), accepted (by the merchant) and expired (raised forty days ago on the simulator's moved clock, so its
    deadline has run out). A payment's `metadata.demo_dispute` names the demo dispute it carries. Idempotent: the
    channels' feeds are read first, and a payment that carries its dispute is left as it is. Without the simulator
    the demo has no payments, and so no disputes."""
    from simulator.client import SimulatorClient

    tags = [tag for tag, *_rest in DEMO_DISPUTES]
    carried = dict(
        PaymentIntent.objects.filter(metadata__demo_dispute__in=tags).values_list("metadata__demo_dispute", "pk")
    )
    if not carried and not PaymentIntent.objects.filter(livemode=True, status=PaymentIntent.Status.SUCCEEDED).exists():
        return
    if not _wait_for(get_connector("simulator"), seconds=3):
        if ctx.out is not None:
            ctx.out.write("  the channel simulator is not reachable: demo disputes skipped\n")
        return
    config = settings.SIMULATOR
    with SimulatorClient(config["URL"], key_id=config["KEY_ID"], secret=config["SECRET"]) as sim:
        _disputes_poll()  # what an earlier run raised and did not hear back about yet
        candidates = iter(
            PaymentIntent.objects.filter(
                livemode=True, status=PaymentIntent.Status.SUCCEEDED, amount_captured__gt=0,
                amount_refund_reserved=0, amount_disputed=0, channel__connector="simulator", channel__sandbox=False,
            )
            .exclude(disputes__isnull=False)
            .exclude(metadata__has_key="demo_dispute")
            .select_related("merchant", "channel")
            .order_by("id")
        )  # fmt: skip
        for tag, kind, percent, end in DEMO_DISPUTES:
            payment = (
                PaymentIntent.objects.filter(pk=carried[tag]).first() if tag in carried else next(candidates, None)
            )
            if payment is None:
                return
            if Dispute.objects.filter(payment=payment, payment_created_at=payment.created_at).exists():
                continue
            dispute = _dispute_raise(sim, payment, tag, kind, percent, end)
            if dispute is None:
                continue
            if end == "evidence_submitted":
                _dispute_answer(sim, dispute, payment)
            elif end == "accepted":
                services.dispute_accept(merchant=payment.merchant, livemode=True, dispute_id=dispute.public_id)
            elif end == "expired":
                services.disputes_expire()
            if ctx.out is not None:
                dispute.refresh_from_db()
                ctx.out.write(f"  dispute {dispute.public_id} ({kind}) on {payment.public_id}: {dispute.status}\n")


def _dispute_raise(sim: Any, payment: PaymentIntent, tag: str, kind: str, percent: int, end: str) -> Any:
    """Raises the demo dispute `tag` at the simulator on `payment` (marked as carrying it first), decided at once when
    it ends won or lost, and polls its channel: returns our dispute, or None when the channel did not deliver it."""

    metadata = {**payment.metadata, "demo_dispute": tag}
    PaymentIntent.objects.filter(pk=payment.pk).update(metadata=metadata)
    channel = payment.channel
    assert channel is not None
    remote = remote_key(channel)
    attempt = PaymentAttempt.objects.of(payment).filter(status="captured").order_by("-pk").first()
    if attempt is None:
        return None
    if end == "expired":  # raised forty days ago on the channel's clock: the deadline counts from its notice
        sim.set_clock((timezone.now() - dt.timedelta(days=40)).isoformat())
    try:
        opened = sim.open_dispute(
            channel=remote, reference=attempt.reference, kind=kind,
            amount=max(1, payment.amount_captured * percent // 100), reason_code="4853" if kind == "chargeback" else "",
            outcome="lost" if end == "lost" else "won",
        )  # fmt: skip
    finally:
        if end == "expired":
            sim.set_clock(None)
    if end in ("won", "lost"):
        sim.decide_dispute(opened["id"], end)
    services.disputes_poll(channel=channel)
    return Dispute.objects.filter(channel=channel, channel_reference=opened["id"]).first()


def _dispute_answer(sim: Any, dispute: Any, payment: PaymentIntent) -> None:
    """The merchant answers the retrieval and the answer reaches the channel now, which decides it a month later (its
    decision delay set for the answer, then put back): the demo shows it awaiting the channel's decision."""
    assert payment.channel is not None
    remote = remote_key(payment.channel)
    previous = next(c for c in sim.channels() if c["id"] == remote)["faults"]["dispute_decision_ms"]
    sim.set_faults(remote, dispute_decision_ms=DEMO_DECISION_MS)
    try:
        services.dispute_evidence_submit(
            merchant=payment.merchant, livemode=True, dispute_id=dispute.public_id,
            text="订单已于次日送达，收货人签收。Delivered the next day and signed for.",
        )  # fmt: skip
        with contextlib.suppress(Conflict):  # sent already, when the queued task ran at once
            services.dispute_answer_send(dispute.pk)
    finally:
        sim.set_faults(remote, dispute_decision_ms=previous)


def _disputes_poll() -> None:
    for channel in Channel.objects.filter(connector="simulator", sandbox=False, enabled=True).order_by("pk"):
        services.disputes_poll(channel=channel)
