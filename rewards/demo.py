"""Demo ledger history for the cardholders the members demo created: earnings, a redemption, an exchange, a hold.

The earnings are written in bulk (`points_earn_bulk`: one ledger transaction per batch, one entry per wallet), in three
batches of different ages, so every wallet has three lots with their own expiry dates; the redemptions, holds and
exchanges go one by one through their services. Idempotent: a batch holds only the wallets no earlier batch of its
age credited (under a key made from its contents), and every other posting has a stable idempotency key, so a second
run posts nothing, and a holder or card added since earns without anyone earning twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

from django.db.models import F

from core.jobs import job_run
from members.models import BindingStatus, Card, PointsProgram

from . import sealing, services
from .models import Entry, OwnerKind

LIMITS = {"small": 20, "large": 200}  # cardholders given a history
EARNINGS = ((200, 3000), (90, 1200), (20, 800))  # (days ago, points) of each wallet's three lots


def seed_rewards(ctx: Any) -> None:
    pairs = list(
        Card.objects.filter(status=BindingStatus.ACTIVE, bank__points_program__active=True)
        .values_list("cardholder_id", "bank__points_program")
        .distinct()
        .order_by("cardholder_id", "bank__points_program")
    )
    if not pairs:
        return
    scale, out = getattr(ctx, "scale", "small"), getattr(ctx, "out", None)
    limit = LIMITS.get(scale, LIMITS["small"])
    programs = {p.pk: p for p in PointsProgram.objects.filter(active=True)}
    holders: dict[int, list[int]] = {}
    for cardholder_id, program_id in pairs:
        if len(holders) >= limit and cardholder_id not in holders:
            break
        holders.setdefault(cardholder_id, []).append(program_id)
    wanted = [(holder, program) for holder, program_ids in holders.items() for program in program_ids]
    with job_run("rewards.seed_demo", period=scale, total=len(holders), echo=out) as run:
        for n, (days_ago, amount) in enumerate(EARNINGS):
            _earn_batch(n, wanted, amount, services.today() - dt.timedelta(days=days_ago))
        for cardholder_id, program_ids in holders.items():
            _spend(cardholder_id, [programs[pid] for pid in program_ids], programs)
            run.advance(1)


def _earn_batch(n: int, wanted: list[tuple[int, int]], amount: int, earned_on: dt.date) -> None:
    """The `n`th age's earn for every (holder, programme) in `wanted` that no batch of that age has credited yet."""
    prefix = f"demo:earn-batch:{n}:"
    credited = set(
        Entry.objects.filter(
            transaction__idempotency_key__startswith=prefix,
            account__owner_kind=OwnerKind.CARDHOLDER,
            account__spread=F("spread"),  # on Citus, joins the entries to their accounts shard by shard
        ).values_list("account__owner_id", "account__program_id")
    )
    missing = [pair for pair in wanted if pair not in credited]
    if not missing:
        return
    digest = hashlib.sha256(repr(missing).encode()).hexdigest()[:16]
    services.points_earn_bulk(
        events=[services.EarnEvent(cardholder_id=c, program_id=p, amount=amount) for c, p in missing],
        idempotency_key=prefix + digest,
        earned_on=earned_on,
        source=services.EarnSource.CAMPAIGN,
    )


def _spend(cardholder_id: int, own: list[PointsProgram], programs: dict[int, PointsProgram]) -> None:
    """A redemption and a hold in every programme the holder earns in, and an exchange out of the first."""
    for program in own:
        services.points_redeem(
            cardholder_id=cardholder_id,
            program=program,
            amount=500,
            idempotency_key=f"demo:redeem:{cardholder_id}:{program.pk}",
            metadata={"demo": True},
        )
        services.hold_create(
            cardholder_id=cardholder_id,
            program=program,
            amount=200,
            idempotency_key=f"demo:hold:{cardholder_id}:{program.pk}",
            expires_at=None,
        )
    source = own[0]
    others = [p for pid, p in sorted(programs.items()) if pid != source.pk]
    if others:
        services.points_exchange(
            cardholder_id=cardholder_id,
            from_program=source,
            to_program=others[0],
            amount=1000,
            idempotency_key=f"demo:exchange:{cardholder_id}:{source.pk}:{others[0].pk}",
        )


# --- an archived month: the demo login's movements of a year ago, detached as the partitions job does -------------

ARCHIVED_EARNS = (500, 300)  # campaign points the demo login earned in the archived month, oldest first
ARCHIVED_MONTHS_AGO = 13  # before the eleven months of the login's spending history and the settlement days


def seed_archived_month(ctx: Any) -> None:
    """Two campaign earns of the demo login, dated back to the 15th and 20th of a month a year ago, sealed, and that
    month of entries, then of transactions, detached to archive tables (docs/scaling.md, "Partitioning by month"): an
    operator finds them in *Platform › Archived months*, the login's statement still shows the earns (as campaign
    bonuses), their points stay in the wallet to be spent, and the ledger check still counts them. Runs before any other
    posting of the login's, so these are the oldest movements of its statement, by id as by date. Idempotent:
    nothing once a month of entries is archived (a later run, whatever the month, dates nothing again: an archived
    entry keeps its time)."""
    from django.db import connection, transaction

    from core.calendar import SHANGHAI
    from core.models import ArchivedMonth
    from core.partitions import add_months, month_start, partition_detach, partitions_create

    from .models import LedgerTransaction

    username = getattr(ctx, "demo_cardholder", "")
    card = (
        Card.objects.filter(
            cardholder__user__username=username, status=BindingStatus.ACTIVE, bank__points_program__active=True
        )
        .select_related("bank__points_program")
        .order_by("pk")
        .first()
        if username
        else None
    )
    if card is None or ArchivedMonth.objects.filter(table=Entry._meta.db_table).exists():
        return
    month = add_months(month_start(services.today()), -ARCHIVED_MONTHS_AGO)
    with transaction.atomic():
        for n, amount in enumerate(ARCHIVED_EARNS):
            earn = services.points_earn(
                cardholder_id=card.cardholder_id,
                program=card.bank.points_program,
                amount=amount,
                idempotency_key=f"demo:archived-earn:{n}",
                source=services.EarnSource.CAMPAIGN,
            )
            at = dt.datetime.combine(month.replace(day=15 + 5 * n), dt.time(10, 0), tzinfo=SHANGHAI)
            if earn.seal_id is None:  # a seal hashes the time: one sealed by an unfinished run keeps it
                # Through its key's row: the transaction, its entries and its lot follow (ON UPDATE CASCADE).
                LedgerTransaction.objects.redate([earn.pk], at)
    # As the job would, only once sealed: the sealer reads the live months, and would never hash them afterwards.
    sealing.seal_pending()
    with transaction.atomic():
        # PostgreSQL alters no table whose rows have key checks pending: make them now, and defer them again after.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in (LedgerTransaction._meta.db_table, Entry._meta.db_table):
            partitions_create(table, month, 1)  # the month's rows move out of the DEFAULT partition
        # Entries first: they refer to their transactions. The earns' lots refer to their keys' rows, which stay.
        archived = [
            partition_detach(table, month) for table in (Entry._meta.db_table, LedgerTransaction._meta.db_table)
        ]
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    if ctx.out is not None and all(archived):
        ctx.out.write(f"  archived month: {month:%Y-%m} of the ledger, in {' and '.join(map(str, archived))}\n")


# --- benefits: each bank contributes, two merchants contribute vouchers, card privileges, vouchers in every state ----

BENEFITS: tuple[tuple[str, str, str, str, int, list[str]], ...] = (  # (kind, titles zh and en, pricing, price, tiers)
    ("gift", "联名保温杯", "Co-branded travel mug", "points", 800, []),
    ("lounge", "机场贵宾厅单次", "Airport lounge visit", "cny", 20_000, []),
    ("service", "道路救援一次", "Roadside assistance", "free", 0, ["gold", "platinum", "diamond"]),
    ("coupon", "观影立减券", "Cinema discount coupon", "points", 300, []),
    ("service", "年度体检", "Annual health check", "free", 0, ["platinum", "diamond"]),
    ("gift", "定制书签礼盒", "Bookmark gift set", "cny", 15_000, []),
)
# What one use of each free privilege is worth, as its bank states it (CNY ten-thousandths): the card comparison
# values privileges at this.
PRIVILEGE_VALUES = {"Roadside assistance": 3_000_000, "Annual health check": 5_000_000}
MERCHANT_VOUCHERS = (  # (merchant code, title zh, title en, CNY ten-thousandths)
    ("DEMO-NOODLE", "招牌牛肉面兑换券", "Signature beef noodles voucher", 20_000),
    ("DEMO-GROCER", "生鲜满减券 ¥10", "CNY 10 off fresh groceries", 15_000),
)


def seed_benefits(ctx: Any) -> None:
    """A catalogue worth browsing, published through the approval queue (each bank's operator asks, the alliance
    operator approves), and vouchers of a few demo cardholders in every state. Idempotent: benefits are found by bank
    and title, redemptions by their keys, and a voucher is moved on only while it is still issued."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from members.models import MemberBank
    from merchants.models import Merchant

    from .models import Benefit, Voucher

    checker = get_user_model().objects.filter(username="alliance").first()
    if checker is None:
        return
    now = timezone.now()
    window = {"valid_from": now - dt.timedelta(days=30), "valid_until": now + dt.timedelta(days=365)}
    made: list[Benefit] = []
    banks = list(MemberBank.objects.filter(points_program__active=True).select_related("points_program"))
    for n, bank in enumerate(banks):
        kind, zh, en, pricing, price, tiers = BENEFITS[n % len(BENEFITS)]
        fields: dict[str, Any] = {"kind": kind, "pricing": pricing, "eligible_tiers": tiers, **window}
        if pricing == "points":
            fields.update(price_program=bank.points_program, price_points=price)
        elif pricing == "cny":
            fields.update(price_cny_units=price)
        else:
            fields.update(value_cny_units=PRIVILEGE_VALUES.get(en))
        made.append(_benefit(bank, zh, en, {**fields, "stock_total": 500, "limit_per_month": 2}, checker))
    for code, zh, en, price in MERCHANT_VOUCHERS:
        merchant = Merchant.objects.filter(code=code).first()
        if merchant is not None:
            made.append(_merchant_voucher(merchant, zh, en, price, window, checker))
    _seed_vouchers([b for b in made if b.pricing == Benefit.Pricing.CNY], Voucher)


def _merchant_voucher(merchant: Any, zh: str, en: str, price: int, window: dict[str, Any], checker: Any) -> Any:
    fields = {"kind": "voucher", "pricing": "cny", "price_cny_units": price, "merchant": merchant, **window}
    fields.update(funding_merchant=merchant, stock_total=200, limit_per_card=3, voucher_valid_days=14)
    return _benefit(merchant.sponsor_bank, zh, en, fields, checker)


def _benefit(bank: Any, zh: str, en: str, fields: dict[str, Any], checker: Any) -> Any:
    from members.models import BankOperator

    from .models import Benefit

    benefit = Benefit.objects.filter(bank=bank, title_en=en).first()
    if benefit is None:
        benefit = Benefit.objects.create(
            bank=bank,
            title_zh=zh,
            title_en=en,
            description_zh=f"{bank.name_zh}为联盟持卡人提供:{zh}。",
            description_en=f"{bank.name_en} offers alliance cardholders: {en}.",
            terms_zh="每人每月限兑两次;兑换后 24 小时内可取消。",
            terms_en="Twice a month per cardholder; cancel within 24 hours of redeeming.",
            stock_left=fields.get("stock_total"),
            **fields,
        )
    maker = BankOperator.objects.filter(bank=bank, role=BankOperator.Role.OPERATOR).select_related("user").first()
    if benefit.status == Benefit.Status.DRAFT and maker is not None:
        benefit = benefit_publish(benefit, maker.user, checker)
    return benefit


def benefit_publish(benefit: Any, maker: Any, checker: Any) -> Any:
    """Publishes a draft as operators would: `maker` asks (unless a request already waits), `checker` approves it in
    the approval queue."""
    from core.approvals import approval_approve

    request = services.benefit_publish_requests_pending(benefit.pk).first()
    if request is None:
        request = services.benefit_request_publish(
            benefit_id=benefit.pk, operator=maker, reason="Ready for the catalogue: terms checked with the contributor."
        )
    approval_approve(request_id=request.pk, checker=checker)
    benefit.refresh_from_db()
    return benefit


def _seed_vouchers(benefits: list[Any], voucher_model: Any) -> None:
    """Each CNY-priced benefit redeemed by a few demo cardholders with their own bank's points; of each benefit's
    vouchers one is cancelled, one redeemed at the till (a merchant's) and one expired; the rest stay issued."""
    from django.utils import timezone

    from core.crypto import decrypt
    from core.errors import MengkaError

    cards = list(
        Card.objects.filter(status=BindingStatus.ACTIVE, bank__points_program__active=True)
        .select_related("bank__points_program")
        .order_by("cardholder_id", "id")[:4]
    )
    for benefit in benefits:
        prefix = f"demo:benefit:{benefit.pk}:"
        if benefit.status != "published" or voucher_model.objects.filter(idempotency_key__startswith=prefix).exists():
            continue  # redeemed by an earlier run: points returned since must not let a refused redemption in now
        vouchers = []
        for card in cards:
            try:
                vouchers.append(
                    services.benefit_redeem(
                        cardholder_id=card.cardholder_id,
                        card_id=card.pk,
                        benefit_id=benefit.pk,
                        points={card.bank.points_program.pk: None},
                        idempotency_key=f"{prefix}{card.pk}",
                    )
                )
            except MengkaError:
                continue  # not enough points left in that wallet: the demo goes on without this one
        if vouchers and vouchers[0].state == voucher_model.State.ISSUED:
            services.voucher_cancel(voucher_id=vouchers[0].pk, cardholder_id=vouchers[0].cardholder_id)
        if len(vouchers) >= 2 and vouchers[1].state == voucher_model.State.ISSUED and benefit.merchant is not None:
            services.voucher_redeem(merchant=benefit.merchant, code=decrypt(vouchers[1].code_encrypted))
        if len(vouchers) >= 3 and vouchers[2].state == voucher_model.State.ISSUED:
            now = timezone.now()
            voucher_model.objects.filter(pk=vouchers[2].pk).update(expires_at=now)
            services.vouchers_expire(now=now)


# --- promotions: every kind at the demo merchants, set up before the demo's payments ---------------------------------

# (merchant code, name, fields). Amounts at DEMO-NOODLE and DEMO-FUEL move only by whole yuan (or not at all): the
# demo's declines are triggered by the amount's last two digits there. Small budgets are spent down by the payments.
PROMOTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "DEMO-NOODLE",
        "满200减20 / ¥20 off ¥200",
        {"kind": "amount_off", "amount_off": 2_000, "min_spend": 20_000, "budget": 10_000, "priority": 10},
    ),
    ("DEMO-NOODLE", "集3碗送1碗 / every 3rd bowl", {"kind": "frequency_reward", "frequency_count": 3, "budget": 5_000}),
    (
        "DEMO-FUEL",
        "加油积分翻倍 / double points on fuel",
        {"kind": "points_multiplier", "multiplier": Decimal("2"), "budget": 200_000, "per_cardholder_daily": 1},
    ),
    (
        "DEMO-FUEL",
        "常驾客5%返积分 / 5% back for frequent drivers",
        {"kind": "cashback_points", "cashback_rate": Decimal("0.05"), "budget": 50_000, "segment_tags": ["driver"]},
    ),
    (
        "DEMO-GROCER",
        "生鲜8折 最高减15 / 20% off fresh, up to ¥15",
        {
            "kind": "percent_off",
            "percent_off": Decimal("20"),
            "max_discount": 1_500,
            "min_spend": 5_000,
            "budget": 6_000,
            "cofunder": "HXSB",
            "cofunding": "approved",
        },
    ),
    (
        "DEMO-TRAVEL",
        "随机立减 ¥5–¥50 / random ¥5–¥50 off",
        {
            "kind": "random_off",
            "random_min": 500,
            "random_max": 5_000,
            "random_mean": 1_500,
            "budget": 100_000,
            "cofunder": "JHBK",
            "cofunding": "pending",
        },
    ),
    (
        "DEMO-SHOP",
        "满100减10 周末 / ¥10 off ¥100 at weekends",
        {"kind": "amount_off", "amount_off": 1_000, "min_spend": 10_000, "budget": 3_000, "weekdays": [6, 7]},
    ),
    (
        "DEMO-SHOP",
        "首单3倍积分 / triple points on a first order",
        {
            "kind": "points_multiplier",
            "multiplier": Decimal("3"),
            "first_purchase": True,
            "budget": 30_000,
            "methods": ["card", "payment_code"],
        },
    ),
)
# Given in turn to consenting demo cardholders, as an operator would; none is a segment rule's tag (those are the
# segment job's, which would take back what it does not derive).
SEGMENTS = (["driver"], ["driver", "commuter"], ["commuter"])
TAGGED = 12


def seed_promotions(ctx: Any) -> None:
    """Promotions of every kind at the demo merchants, live, all stackable so that payments show several lines:
    some with budgets the demo's payments spend down, one co-funded and approved (by the bank's operator), one
    awaiting its bank's approval, a segment-targeted one beside an untargeted one at the same merchant, and a
    frequency reward giving the noodle shop's voucher. Some consenting cardholders, and the demo login (which consents
    to personalised offers in the segments step), get operator-set segment tags. Idempotent: a promotion is found by
    merchant and name."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from members.models import BankOperator, Cardholder, ConsentPurpose, MemberBank
    from merchants.models import Merchant

    from .models import Promotion

    checker = get_user_model().objects.filter(username="alliance").first()
    merchants = {m.code: m for m in Merchant.objects.filter(code__in={code for code, _n, _f in PROMOTIONS})}
    if checker is None or len(merchants) < len({code for code, _n, _f in PROMOTIONS}):
        return
    banks = {bank.code: bank for bank in MemberBank.objects.all()}
    now = timezone.now()
    voucher = _merchant_voucher(
        merchants["DEMO-NOODLE"],
        *MERCHANT_VOUCHERS[0][1:],
        {"valid_from": now - dt.timedelta(days=30), "valid_until": now + dt.timedelta(days=365)},
        checker,
    )
    for code, name, spec in PROMOTIONS:
        merchant = merchants[code]
        if Promotion.objects.filter(merchant=merchant, name=name).exists():
            continue
        fields = dict(spec)
        approved = fields.get("cofunding") == Promotion.Cofunding.APPROVED
        if "cofunder" in fields:
            fields.update(cofunder=banks[fields["cofunder"]], cofunder_share=Decimal("0.5"), cofunding="pending")
        if fields["kind"] == Promotion.Kind.FREQUENCY_REWARD:
            fields["reward_benefit"] = voucher
        promotion = Promotion.objects.create(
            merchant=merchant,
            name=name,
            description=name.split(" / ")[-1],
            stacking=Promotion.Stacking.STACKABLE,
            starts_at=now - dt.timedelta(days=7),
            ends_at=now + dt.timedelta(days=60),
            **fields,
        )
        if approved:  # by one of the co-funding bank's operators, as in the admin
            operator = BankOperator.objects.filter(bank=promotion.cofunder, role=BankOperator.Role.OPERATOR).first()
            approver = operator.user if operator is not None else checker
            services.promotion_cofunding_decide(promotion_id=promotion.pk, approve=True, operator=approver)
    username = getattr(ctx, "demo_cardholder", "")
    consenting = Cardholder.objects.filter(
        consents__purpose=ConsentPurpose.PERSONALISED_OFFERS, consents__granted=True, segment_tags=[]
    ).order_by("pk")
    # Once: a second run finds the first one's tags (every third set starts with "driver") and tags no one else.
    if not Cardholder.objects.filter(segment_tags__contains=SEGMENTS[0]).exclude(user__username=username).exists():
        for n, pk in enumerate(consenting.values_list("pk", flat=True)[:TAGGED]):
            Cardholder.objects.filter(pk=pk).update(segment_tags=SEGMENTS[n % len(SEGMENTS)])
    if username:
        Cardholder.objects.filter(user__username=username, segment_tags=[]).update(segment_tags=["driver"])


def date_obligations(days: list[dt.date], times: dict[str, dt.datetime]) -> list[dt.date]:
    """Demo only: spreads the demo's CNY obligations over `days` so that clearing has a history to clear. A ledger
    transaction naming a payment (`metadata.payment`) takes the payment's time from `times`; the others go round the
    days at 10:00 plus a minute each. Only transactions not sealed yet are moved (a seal hashes the time), and only
    before anything was cleared. Returns the business days (Asia/Shanghai) the moved transactions are on."""
    from core.calendar import SHANGHAI

    from .models import LedgerTransaction, Purpose

    moved = (
        LedgerTransaction.objects.filter(
            seal__isnull=True,
            entries__account__purpose__in=[Purpose.CLEARING, Purpose.FEES],
            entries__account__spread=F("entries__spread"),  # on Citus, joins entries and accounts shard by shard
        )
        .distinct()
        .order_by("pk")
    )
    dated: set[dt.date] = set()
    for index, (pk, metadata) in enumerate(moved.values_list("pk", "metadata")):
        at = times.get(str((metadata or {}).get("payment") or ""))
        if at is None:
            day = days[index % len(days)]
            at = dt.datetime.combine(day, dt.time(10, 0), tzinfo=SHANGHAI) + dt.timedelta(minutes=index)
        LedgerTransaction.objects.redate([pk], at)  # with its entries and everything else carrying its time
        dated.add(at.astimezone(SHANGHAI).date())
    return sorted(dated)
