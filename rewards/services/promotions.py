"""The promotions engine (新商盟): prices a payment with its merchant's promotions, and holds each one's hard budget.

The engine never reads payment history: payments hands it a `Context` (the price asked, merchant, store, category,
the card's bank, product and tier, the method, the time, whether this is the cardholder's first payment here, the
cardholder's segment tags when they consent to personalised offers). `price` answers with a line per promotion
applied and the reason each other active one did not apply; the quote and the payment call the same function.

Order: promotions apply by priority (higher first, then the older). An exclusive promotion applies only when it is
the first to apply, and then alone; stackable ones apply in turn, each on what is left to pay. A payment always keeps
at least one minor unit to pay.

Budget: a payment reserves its lines in its own transaction (`reserve`): per-cardholder counters first, then the
promotions' rows, each a guarded `UPDATE` (`committed + cost <= budget`, `uses < max_uses`), all in promotion id
order, so concurrent payments can never give a cent more than the budget and never deadlock. A capture consumes the
share captured and hands back the rest (`consume`); a cancellation or failure releases everything (`release`);
refunds hand back cost and points cumulatively, returned so far = floor(given × refunded / captured)
(`refund_return`). A co-funding bank's part of a use is a ledger obligation to the merchant, posted when the use is
consumed and handed back by refunds by the same cumulative rule (`cofunding_posting`). Every path that locks a
promotion's row takes it after the ledger's accounts and the counters.
See docs/promotions.md.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from psycopg2 import sql

from core.calendar import local_date
from core.errors import Conflict, MengkaError
from core.money import proportional_floor
from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Promotion, PromotionCounter, PromotionUse
from .cofunding_posting import Cofunded, cofunding_post, cofunding_return
from .obligations import Party

T = TypeVar("T")
Kind = Promotion.Kind
DISCOUNTS = frozenset({Kind.AMOUNT_OFF, Kind.PERCENT_OFF, Kind.RANDOM_OFF})
POINTS = frozenset({Kind.POINTS_MULTIPLIER, Kind.CASHBACK_POINTS})
# What the merchant pays for at settlement (less a co-funding bank's part): points given and vouchers issued. A
# discount is already paid for by the lower price; a co-funding bank's part of it is credited to the merchant.
MERCHANT_CHARGED = POINTS | {Kind.FREQUENCY_REWARD}

# Drawn server-side; tests replace it with a seeded generator.
rng: random.Random = random.SystemRandom()


# --- what payments tells the engine ---------------------------------------------------------------------------------


@dataclass
class Context:
    """A payment as the engine sees it. `first_purchase` and `segments` are asked only when a promotion needs them;
    `segments` answers the empty set unless the cardholder consents to personalised offers."""

    merchant_id: int
    livemode: bool
    currency: str
    amount: int  # the price asked, in minor units
    at: dt.datetime
    method: str
    category: str
    store_id: int | None = None
    cardholder_id: int | None = None
    card_id: int | None = None
    card_bank_id: int | None = None
    card_product_id: int | None = None
    card_tier: str | None = None
    earning_rate: Decimal = Decimal(0)  # the card's points per yuan here
    program: PointsProgram | None = None  # the issuer's programme, for points kinds
    first_purchase: Callable[[], bool] = lambda: False
    segments: Callable[[], frozenset[str]] = frozenset
    _asked: dict[str, Any] = field(default_factory=dict, repr=False)

    def is_first_purchase(self) -> bool:
        if "first" not in self._asked:
            self._asked["first"] = bool(self.first_purchase())
        return bool(self._asked["first"])

    def local_time(self) -> dt.datetime:
        if "local" not in self._asked:
            self._asked["local"] = timezone.localtime(self.at)
        return self._asked["local"]  # type: ignore[no-any-return]

    def segment_tags(self) -> frozenset[str]:
        if "segments" not in self._asked:
            self._asked["segments"] = frozenset(self.segments())
        return frozenset(self._asked["segments"])


# --- rules ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A promotion's conditions and benefit, read once per change of its row (see `_rules`)."""

    id: int
    public_id: str
    name: str
    kind: str
    currency: str
    exclusive: bool
    priority: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    min_spend: int
    stores: frozenset[int]
    categories: frozenset[str]
    card_banks: frozenset[int]
    card_products: frozenset[int]
    card_tiers: frozenset[str]
    methods: frozenset[str]
    weekdays: frozenset[int]
    hour_from: int | None
    hour_to: int | None
    first_purchase: bool
    segment_tags: frozenset[str]
    budget: int
    max_uses: int | None
    per_cardholder_daily: int | None
    per_cardholder: int | None
    amount_off: int | None
    percent_off: Decimal | None
    max_discount: int | None
    multiplier: Decimal | None
    random_min: int | None
    random_max: int | None
    random_mean: int | None
    cashback_rate: Decimal | None
    frequency_count: int | None
    reward_benefit_id: int | None
    reward_cost: int  # the reward voucher's value in minor units
    cofunder_share: Decimal | None  # set once the co-funding bank approved
    cofunding_refusal: str | None  # why a co-funded promotion does not apply yet: pending, or rejected

    @property
    def counted(self) -> bool:
        """Whether a payment's use needs the cardholder's counters."""
        return bool(self.per_cardholder_daily or self.per_cardholder or self.frequency_count)


def _rule(promotion: Promotion, m2m: dict[str, dict[int, set[int]]]) -> Rule:
    reward_cost = 0
    benefit = promotion.reward_benefit
    if benefit is not None and benefit.price_cny_units:
        reward_cost = math.ceil(benefit.price_cny_units / 100)
    elif benefit is not None and benefit.price_points and benefit.price_program is not None:
        value = Decimal(benefit.price_points) * benefit.price_program.point_value_cny * 100
        reward_cost = int(value.to_integral_value(rounding=ROUND_CEILING))
    approved = promotion.cofunding == Promotion.Cofunding.APPROVED
    return Rule(
        id=promotion.pk,
        public_id=promotion.public_id,
        name=promotion.name,
        kind=promotion.kind,
        currency=promotion.currency,
        exclusive=promotion.stacking == Promotion.Stacking.EXCLUSIVE,
        priority=promotion.priority,
        starts_at=promotion.starts_at,
        ends_at=promotion.ends_at,
        min_spend=promotion.min_spend,
        stores=frozenset(m2m["stores"].get(promotion.pk, ())),
        categories=frozenset(promotion.categories or ()),
        card_banks=frozenset(m2m["card_banks"].get(promotion.pk, ())),
        card_products=frozenset(m2m["card_products"].get(promotion.pk, ())),
        card_tiers=frozenset(promotion.card_tiers or ()),
        methods=frozenset(promotion.methods or ()),
        weekdays=frozenset(int(day) for day in promotion.weekdays or ()),
        hour_from=promotion.hour_from,
        hour_to=promotion.hour_to,
        first_purchase=promotion.first_purchase,
        segment_tags=frozenset(promotion.segment_tags or ()),
        budget=promotion.budget,
        max_uses=promotion.max_uses,
        per_cardholder_daily=promotion.per_cardholder_daily,
        per_cardholder=promotion.per_cardholder,
        amount_off=promotion.amount_off,
        percent_off=promotion.percent_off,
        max_discount=promotion.max_discount,
        multiplier=promotion.multiplier,
        random_min=promotion.random_min,
        random_max=promotion.random_max,
        random_mean=promotion.random_mean,
        cashback_rate=promotion.cashback_rate,
        frequency_count=promotion.frequency_count,
        reward_benefit_id=promotion.reward_benefit_id,
        reward_cost=reward_cost,
        cofunder_share=promotion.cofunder_share if approved else None,
        cofunding_refusal=(
            None
            if promotion.cofunder_id is None or approved
            else "cofunding_rejected"
            if promotion.cofunding == Promotion.Cofunding.REJECTED
            else "cofunding_pending"
        ),
    )


# Compiled rules by (promotion id, updated_at): a promotion's conditions are read again only when its row changes
# (every service that changes a promotion, its stores or its card lists saves the row).
_compiled: dict[tuple[int, dt.datetime], Rule] = {}
_COMPILED_MAX = 5000


@dataclass(frozen=True)
class Live:
    """A promotion's budget as read now."""

    committed: int
    uses: int


def _rules(merchant_id: int, livemode: bool, at: dt.datetime) -> list[tuple[Rule, Live]]:
    """The merchant's active promotions on now, in the order they apply, with their budgets as read: one query,
    plus one per changed promotion."""
    rows = list(
        Promotion.objects.filter(
            merchant_id=merchant_id,
            livemode=livemode,
            status=Promotion.Status.ACTIVE,
            starts_at__lte=at,
            ends_at__gt=at,
        ).values_list("pk", "updated_at", "committed", "uses")
    )
    missing = [pk for pk, updated, _c, _u in rows if (pk, updated) not in _compiled]
    if missing:
        _compile(missing)
    found = []
    for pk, updated, committed, uses in rows:
        rule = _compiled.get((pk, updated))
        if rule is not None:  # changed again between the two reads: left out of this evaluation
            found.append((rule, Live(committed, uses)))
    found.sort(key=lambda pair: (-pair[0].priority, pair[0].id))
    return found


def _compile(ids: list[int]) -> None:
    if len(_compiled) > _COMPILED_MAX:
        _compiled.clear()
    promotions = Promotion.objects.filter(pk__in=ids).select_related("reward_benefit__price_program")
    m2m: dict[str, dict[int, set[int]]] = {}
    for name, through, column in (
        ("stores", Promotion.stores.through, "store_id"),
        ("card_banks", Promotion.card_banks.through, "memberbank_id"),
        ("card_products", Promotion.card_products.through, "cardproduct_id"),
    ):
        links: dict[int, set[int]] = {}
        for promotion_id, target in through.objects.filter(promotion_id__in=ids).values_list("promotion_id", column):
            links.setdefault(promotion_id, set()).add(target)
        m2m[name] = links
    for promotion in promotions:
        _compiled[(promotion.pk, promotion.updated_at)] = _rule(promotion, m2m)


# --- pricing ----------------------------------------------------------------------------------------------------------


@dataclass
class Line:
    """One promotion applied: the cash it takes off, the points it gives, the voucher it earns, what it costs."""

    rule: Rule
    discount: int = 0
    discount_max: int | None = None  # a random discount, quoted: it is drawn when the payment is made
    points: int = 0
    cost: int = 0
    stamp: int | None = None  # a frequency reward: this payment's number in the month
    rewarded: bool = False

    @property
    def gives(self) -> bool:
        return bool(self.discount or self.points or self.rewarded or self.discount_max)

    def as_dict(self) -> dict[str, Any]:
        rule = self.rule
        return line_out(
            rule.public_id, rule.name, rule.kind, self.discount, self.points,
            discount_max=self.discount_max, stamp=self.stamp, of=rule.frequency_count, voucher=self.rewarded,
        )  # fmt: skip


@dataclass(frozen=True)
class NotApplied:
    rule: Rule
    reason: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "promotion": self.rule.public_id,
            "name": self.rule.name,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class Pricing:
    amount: int  # the price asked
    lines: list[Line]
    not_applied: list[NotApplied]

    @property
    def discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def points(self) -> int:
        return sum(line.points for line in self.lines)

    @property
    def payable(self) -> int:
        return self.amount - self.discount


REASONS = {
    "currency": gettext_noop("The promotion is for payments in another currency."),
    "min_spend": gettext_noop("The payment is below the minimum spend."),
    "store": gettext_noop("Not at one of the promotion's stores."),
    "category": gettext_noop("Not in one of the promotion's spend categories."),
    "card_bank": gettext_noop("The card is not from one of the promotion's banks."),
    "card_product": gettext_noop("The card is not one of the promotion's products."),
    "card_tier": gettext_noop("The card's tier is not one of the promotion's."),
    "method": gettext_noop("The payment method is not one of the promotion's."),
    "weekday": gettext_noop("Not on one of the promotion's weekdays."),
    "hours": gettext_noop("Outside the promotion's hours."),
    "first_purchase": gettext_noop("Only for a cardholder's first payment at this merchant."),
    "segment": gettext_noop("Only for cardholders in its segments who consent to personalised offers."),
    "cofunding_pending": gettext_noop("Waiting for the co-funding bank's approval."),
    "cofunding_rejected": gettext_noop("The co-funding bank declined to fund it."),
    "budget_exhausted": gettext_noop("The promotion's budget is spent."),
    "uses_exhausted": gettext_noop("The promotion has been used as many times as it allows."),
    "cardholder_daily_limit": gettext_noop("The cardholder has used it as often as allowed today."),
    "cardholder_limit": gettext_noop("The cardholder has used it as often as allowed."),
    "no_points": gettext_noop("This payment earns no points (no card, no points programme here, or not in CNY)."),
    "no_card": gettext_noop("A frequency reward's voucher needs a card."),
    "nothing_to_give": gettext_noop("It would give nothing on this payment."),
    "exclusive": gettext_noop("An exclusive promotion applied before it."),
    "not_stackable": gettext_noop("It is exclusive, and another promotion applied before it."),
}


_translated: dict[str, dict[str, str]] = {}


def _messages() -> dict[str, str]:
    """The reasons' messages in the active language, translated once per language (a quote refuses most of a large
    catalogue: translating each line again was a quarter of its time)."""
    language = translation.get_language() or ""
    messages = _translated.get(language)
    if messages is None:
        messages = _translated[language] = {code: _(text) for code, text in REASONS.items()}
    return messages


def _refusal(rule: Rule, ctx: Context) -> str | None:
    """Why `rule` does not apply to `ctx` by its conditions (budgets aside), or None."""
    if rule.cofunding_refusal is not None:
        return rule.cofunding_refusal
    if rule.currency != ctx.currency:
        return "currency"
    if ctx.amount < rule.min_spend:
        return "min_spend"
    if rule.stores and ctx.store_id not in rule.stores:
        return "store"
    if rule.categories and ctx.category not in rule.categories:
        return "category"
    if rule.card_banks and ctx.card_bank_id not in rule.card_banks:
        return "card_bank"
    if rule.card_products and ctx.card_product_id not in rule.card_products:
        return "card_product"
    if rule.card_tiers and ctx.card_tier not in rule.card_tiers:
        return "card_tier"
    if rule.methods and ctx.method not in rule.methods:
        return "method"
    local = ctx.local_time()
    if rule.weekdays and local.isoweekday() not in rule.weekdays:
        return "weekday"
    if rule.hour_from is not None or rule.hour_to is not None:
        start, end = rule.hour_from or 0, 24 if rule.hour_to is None else rule.hour_to
        inside = start <= local.hour < end if start <= end else (local.hour >= start or local.hour < end)
        if not inside:
            return "hours"
    if rule.first_purchase and not ctx.is_first_purchase():
        return "first_purchase"
    if rule.segment_tags and not (rule.segment_tags & ctx.segment_tags()):
        return "segment"
    if rule.kind in POINTS and (ctx.program is None or ctx.currency != "CNY" or ctx.card_id is None):
        return "no_points"
    if rule.kind == Kind.FREQUENCY_REWARD and ctx.card_id is None:
        return "no_card"
    return None


def _periods(ctx: Context) -> tuple[str, str]:
    day = local_date(ctx.at)
    return day.isoformat(), day.strftime("%Y-%m")


def _counters(rules: Iterable[Rule], ctx: Context) -> dict[tuple[int, str], int]:
    counted = [rule.id for rule in rules if rule.counted]
    if not counted or ctx.cardholder_id is None:
        return {}
    day, month = _periods(ctx)
    rows = PromotionCounter.objects.filter(
        promotion_id__in=counted, cardholder_id=ctx.cardholder_id, period__in=["", day, month]
    ).values_list("promotion_id", "period", "used")
    return {(pid, period): used for pid, period, used in rows}


def draw(low: int, high: int, mean: int | None, generator: random.Random) -> int:
    """A random discount in [low, high] whose expected value is at most `mean` (the midpoint when None):
    low + floor((high − low) × u^k) with k = (high − low) / (mean − low) − 1, u uniform in [0, 1), so that
    E = low + (high − low) / (k + 1) = mean before the floor."""
    if high <= low:
        return low
    mean = (low + high) // 2 if mean is None else mean
    if mean <= low:
        return low
    k = (high - low) / (mean - low) - 1
    value = low + math.floor((high - low) * generator.random() ** k)
    return min(max(value, low), high)


def _points_given(
    promotion: Rule | Promotion,
    cash: int,
    program: PointsProgram,
    *,
    earned: int | None = None,
    rate: Decimal = Decimal(0),
) -> int:
    """The points a points-kind promotion gives on `cash` (CNY fen): a multiplier's extra points on what the card
    earns (`earned`, or `rate` points per yuan of the cash), or the cashback rate of the cash in the issuer's
    points at their value."""
    if cash <= 0:
        return 0
    yuan = Decimal(cash) / 100
    if promotion.kind == Kind.POINTS_MULTIPLIER and promotion.multiplier is not None:
        if earned is None:
            earned = int((yuan * rate).to_integral_value(rounding=ROUND_FLOOR))
        return int((Decimal(earned) * (promotion.multiplier - 1)).to_integral_value(rounding=ROUND_FLOOR))
    if promotion.kind == Kind.CASHBACK_POINTS and promotion.cashback_rate is not None:
        return int((yuan * promotion.cashback_rate / program.point_value_cny).to_integral_value(rounding=ROUND_FLOOR))
    return 0


def points_cost(points: int, program: PointsProgram) -> int:
    """What `points` cost a promotion's budget: their CNY value in fen, rounded up (a budget is never overspent by
    rounding)."""
    return int((Decimal(points) * program.point_value_cny * 100).to_integral_value(rounding=ROUND_CEILING))


def price(ctx: Context, *, exclude: Iterable[int] = (), drawing: bool = False) -> Pricing:
    """Prices `ctx` with the merchant's promotions: the lines applied, in order, and why each other active
    promotion did not apply. With `drawing`, random discounts are drawn (a payment); without, they are quoted as
    their range."""
    excluded = frozenset(exclude)
    rules = _rules(ctx.merchant_id, ctx.livemode, ctx.at)
    messages = _messages()
    read: dict[tuple[int, str], int] | None = None

    def counter(rule: Rule, period: str) -> int:
        # Read on first need, for every promotion that counts: none when no such promotion gets that far.
        nonlocal read
        if read is None:
            read = _counters((candidate for candidate, _live in rules), ctx)
        return read.get((rule.id, period), 0)

    day, month = _periods(ctx)
    lines: list[Line] = []
    not_applied: list[NotApplied] = []
    remaining = ctx.amount
    exclusive_applied = False

    def refuse(rule: Rule, reason: str) -> None:
        not_applied.append(NotApplied(rule, reason, messages[reason]))

    for rule, live in rules:
        if rule.id in excluded:
            refuse(rule, "budget_exhausted")
            continue
        reason = _refusal(rule, ctx)
        if reason is None and ctx.cardholder_id is not None:
            if rule.per_cardholder_daily is not None and counter(rule, day) >= rule.per_cardholder_daily:
                reason = "cardholder_daily_limit"
            elif rule.per_cardholder is not None and counter(rule, "") >= rule.per_cardholder:
                reason = "cardholder_limit"
        if reason is None and rule.max_uses is not None and live.uses >= rule.max_uses:
            reason = "uses_exhausted"
        if reason is None and exclusive_applied:
            reason = "exclusive"
        if reason is None and rule.exclusive and lines:
            reason = "not_stackable"
        if reason is not None:
            refuse(rule, reason)
            continue
        line = Line(rule)
        left = rule.budget - live.committed
        if rule.kind in DISCOUNTS:
            line.discount = _discount(rule, remaining, drawing=drawing, budget_left=left)
            if not drawing and rule.kind == Kind.RANDOM_OFF and line.discount > 0:  # as a payment would draw it
                line.discount_max = min(rule.random_max or 0, remaining - 1, left)
            line.cost = line.discount
            if line.discount <= 0 and not line.discount_max:
                refuse(rule, "budget_exhausted" if left < (rule.random_min or 1) else "nothing_to_give")
                continue
        elif rule.kind == Kind.FREQUENCY_REWARD:
            line.stamp = counter(rule, month) + 1
            line.rewarded = bool(rule.frequency_count) and line.stamp % (rule.frequency_count or 1) == 0
            line.cost = rule.reward_cost if line.rewarded else 0
        if line.cost > left:
            refuse(rule, "budget_exhausted")
            continue
        lines.append(line)
        remaining -= line.discount
        exclusive_applied = rule.exclusive
    # Points are given on the cash left to pay, once every discount is known.
    for line in list(lines):
        if line.rule.kind in POINTS:
            assert ctx.program is not None
            line.points = _points_given(line.rule, remaining, ctx.program, rate=ctx.earning_rate)
            line.cost = points_cost(line.points, ctx.program)
            if line.points <= 0 or line.cost > line.rule.budget - _live_of(rules, line.rule).committed:
                lines.remove(line)
                refuse(line.rule, "nothing_to_give" if line.points <= 0 else "budget_exhausted")
    return Pricing(amount=ctx.amount, lines=lines, not_applied=not_applied)


def _live_of(rules: list[tuple[Rule, Live]], rule: Rule) -> Live:
    return next(live for candidate, live in rules if candidate.id == rule.id)


def _discount(rule: Rule, remaining: int, *, drawing: bool, budget_left: int) -> int:
    """The cash `rule` takes off `remaining`, leaving at least one minor unit to pay."""
    most = remaining - 1
    if rule.kind == Kind.AMOUNT_OFF:
        value = rule.amount_off or 0
    elif rule.kind == Kind.PERCENT_OFF:
        value = int((Decimal(remaining) * (rule.percent_off or 0) / 100).to_integral_value(rounding=ROUND_FLOOR))
    else:  # random: drawn for a payment, within what the budget has left; quoted at its lowest
        low, high = rule.random_min or 0, rule.random_max or 0
        if budget_left < low:
            return 0
        value = draw(low, high, rule.random_mean, rng) if drawing else low
        value = min(value, budget_left)
    if rule.max_discount is not None:
        value = min(value, rule.max_discount)
    return max(0, min(value, most))


# --- the budget -------------------------------------------------------------------------------------------------------


class PromotionUnavailable(Conflict):
    """A promotion priced for a payment could not be reserved (its budget, uses or a cardholder's limit were taken
    meanwhile): the payment is priced again without it (`run_priced`)."""

    code = "promotion_unavailable"

    def __init__(self, promotion_id: int, *, exclude: bool = True) -> None:
        super().__init__(_("A promotion changed while the payment was priced; try again."))
        self.promotion_id = promotion_id
        self.exclude = exclude


_COUNTER_TAKE = sql.SQL(
    "INSERT INTO {table} (promotion_id, cardholder_id, period, used) VALUES (%s, %s, %s, 1)"
    " ON CONFLICT (promotion_id, cardholder_id, period) DO UPDATE SET used = {table}.used + 1"
    " WHERE {table}.used < %s RETURNING used"
)


def _take_counter(rule: Rule, cardholder_id: int, period: str, limit: int | None) -> int:
    """A guarded increment of one cardholder counter; the count after it. Raises when the limit is reached."""
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNTER_TAKE.format(table=sql.Identifier(PromotionCounter._meta.db_table)),
            [rule.id, cardholder_id, period, limit if limit is not None else 2**31 - 1],
        )
        row = cursor.fetchone()
    if row is None:
        raise PromotionUnavailable(rule.id)
    return int(row[0])


def reserve(pricing: Pricing, ctx: Context, *, payment: str) -> None:
    """Takes each line's budget, uses and the cardholder's counters, in the payment's transaction (call it inside
    one): guarded increments in promotion id order. Raises `PromotionUnavailable` when one is gone; the caller rolls
    the transaction back and prices again."""
    if not pricing.lines:
        return
    assert ctx.cardholder_id is not None
    day, month = _periods(ctx)
    ordered = sorted(pricing.lines, key=lambda line: line.rule.id)
    for line in ordered:
        rule = line.rule
        if rule.per_cardholder_daily is not None and line.gives:
            _take_counter(rule, ctx.cardholder_id, day, rule.per_cardholder_daily)
        if rule.per_cardholder is not None and line.gives:
            _take_counter(rule, ctx.cardholder_id, "", rule.per_cardholder)
        if rule.frequency_count:
            stamp = _take_counter(rule, ctx.cardholder_id, month, None)
            if stamp != line.stamp:  # another payment of this cardholder took a stamp meanwhile
                raise PromotionUnavailable(rule.id, exclude=False)
    for line in ordered:
        if not line.gives:
            continue
        taken = Promotion.objects.filter(
            pk=line.rule.id,
            status=Promotion.Status.ACTIVE,
            committed__lte=F("budget") - line.cost,
        ).filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        if not taken.update(committed=F("committed") + line.cost, uses=F("uses") + 1):
            raise PromotionUnavailable(line.rule.id)
    PromotionUse.objects.bulk_create(
        PromotionUse(
            promotion_id=line.rule.id,
            cardholder_id=ctx.cardholder_id,
            payment=payment,
            day=local_date(ctx.at),
            position=position,
            discount=line.discount,
            points=line.points,
            cost=line.cost,
            stamp=line.stamp,
            counted=line.gives,
        )
        for position, line in enumerate(pricing.lines)
    )


def _give_back(use: PromotionUse, cost: int, *, use_ended: bool) -> None:
    """Hands `cost` of a use back to its promotion's budget; when the use ended, its count in the promotion's uses
    and in the cardholder's limits too (lowered before the promotion's row: the lock order)."""
    ended = use_ended and use.counted
    if ended:
        _counters_back(use, stamp=False)
        PromotionUse.objects.filter(pk=use.pk).update(counted=False)
        use.counted = False
    if cost <= 0 and not ended:
        return
    Promotion.objects.filter(pk=use.promotion_id).update(
        committed=F("committed") - cost, uses=F("uses") - (1 if ended else 0)
    )


def _counters_back(use: PromotionUse, *, stamp: bool, limits: bool = True) -> None:
    """Lowers the counters a counted use raised (with `limits`, its day's and the campaign's), and with `stamp` its
    month's."""
    promotion = use.promotion
    periods = []
    if limits and promotion.per_cardholder_daily is not None and use.counted:
        periods.append(use.day.isoformat())
    if limits and promotion.per_cardholder is not None and use.counted:
        periods.append("")
    if stamp and promotion.frequency_count:
        periods.append(use.day.strftime("%Y-%m"))
    if periods:
        PromotionCounter.objects.filter(
            promotion_id=use.promotion_id, cardholder_id=use.cardholder_id, period__in=periods, used__gt=0
        ).update(used=F("used") - 1)


def _uses(payment: str, status: str) -> list[PromotionUse]:
    return list(
        PromotionUse.objects.filter(payment=payment, status=status).select_related("promotion").order_by("promotion_id")
    )


def release(*, payment: str) -> None:
    """Everything a payment reserved goes back: it failed, or was cancelled before capture. Idempotent."""
    for use in _uses(payment, PromotionUse.Status.RESERVED):
        if not PromotionUse.objects.filter(pk=use.pk, status=PromotionUse.Status.RESERVED).update(
            status=PromotionUse.Status.RELEASED, updated_at=timezone.now()
        ):
            continue
        # The stamp goes too (the payment never happened); the limits' counts go back with the use's count.
        _counters_back(use, stamp=True, limits=False)
        _give_back(use, use.cost, use_ended=True)


@dataclass(frozen=True)
class Captured:
    """What payments tells `consume`: the cash captured of the cash authorised, the points the card earned on it."""

    cardholder_id: int
    card_id: int | None
    captured: int
    authorized: int
    earned: int
    program: PointsProgram | None


def consume(*, payment: str, captured: Captured, priced: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """On capture, in its transaction: each use keeps the share captured (a discount pro rata, floor; points on the
    cash captured) and hands the rest back; promotion points are earned, funded by the merchant; a frequency reward
    issues its voucher. The ledger and the vouchers first, the promotions' rows last. Returns the payment's
    promotion lines as given. `priced`: the lines as the payment was priced, when the caller holds them."""
    if priced and captured.captured == captured.authorized and all(line["kind"] in DISCOUNTS for line in priced):
        _consume_whole(payment)
        return priced
    uses = _uses(payment, PromotionUse.Status.RESERVED)
    reserved = {use.pk: use.cost for use in uses}
    for use in uses:
        promotion = use.promotion
        if promotion.kind in DISCOUNTS:
            use.discount = proportional_floor(use.discount, captured.captured, captured.authorized)
            use.cost = use.discount
        elif promotion.kind in POINTS:
            given = 0
            if captured.program is not None:
                given = _points_given(promotion, captured.captured, captured.program, earned=captured.earned)
            use.points = min(use.points, given)
            use.cost = min(use.cost, points_cost(use.points, captured.program)) if captured.program else 0
            if use.points > 0:
                use.points_transaction = _earn_points(use, promotion, captured)
                use.points_transaction_created_at = use.points_transaction.created_at
        elif promotion.kind == Kind.FREQUENCY_REWARD and use.counted:
            use.voucher = _reward_voucher(use, promotion, captured)
            if use.voucher is None:
                use.cost = 0  # sold out since it was priced: nothing given, nothing spent
        if promotion.cofunding == Promotion.Cofunding.APPROVED and promotion.cofunder_share is not None:
            use.cofunder_cost = _cofunder_part(use.cost, promotion.cofunder_share)
        use.status = PromotionUse.Status.CONSUMED
        use.save(
            update_fields=[
                "discount", "points", "cost", "cofunder_cost", "status", "points_transaction",
                "points_transaction_created_at", "voucher", "updated_at",
            ]
        )  # fmt: skip
        cofunding_post(_cofunded(use, promotion))
    for use in uses:
        ended = not (use.cost or use.points or use.voucher_id)
        _give_back(use, reserved[use.pk] - use.cost, use_ended=ended)
    return [use_line(use) for use in uses]


# The whole capture's uses in one statement, the co-funding bank's part computed as in `_cofunder_part`,
# floor(cost × share), with what their co-funding needs.
_CONSUME_WHOLE = sql.SQL(
    "UPDATE {uses} u SET status = %(consumed)s, updated_at = %(now)s,"
    " cofunder_cost = coalesce(CASE WHEN p.cofunding = %(approved)s THEN floor(u.cost * p.cofunder_share) END, 0)"
    " FROM {promotions} p WHERE p.id = u.promotion_id AND u.payment = %(payment)s AND u.status = %(reserved)s"
    " RETURNING u.id, u.cofunder_cost, p.public_id, p.merchant_id, p.cofunder_id, p.currency, p.livemode"
)


def _consume_whole(payment: str) -> None:
    """A capture of everything authorised keeps every discount whole: nothing goes back to a budget, and the uses
    move in one statement; the co-funded ones then post their co-funding (`cofunding_post`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CONSUME_WHOLE.format(
                uses=sql.Identifier(PromotionUse._meta.db_table), promotions=sql.Identifier(Promotion._meta.db_table)
            ),
            {
                "consumed": PromotionUse.Status.CONSUMED,
                "reserved": PromotionUse.Status.RESERVED,
                "approved": Promotion.Cofunding.APPROVED,
                "payment": payment,
                "now": timezone.now(),
            },
        )
        rows = cursor.fetchall()
    for use_id, cofunder_cost, promotion, merchant_id, cofunder_id, currency, livemode in sorted(rows):
        cofunding_post(
            Cofunded(
                use_id=use_id,
                payment=payment,
                promotion=promotion,
                merchant_id=merchant_id,
                cofunder_id=cofunder_id,
                currency=currency,
                livemode=livemode,
                cofunder_cost=int(cofunder_cost),
            )
        )


def _cofunded(use: PromotionUse, promotion: Promotion) -> Cofunded:
    return Cofunded(
        use_id=use.pk,
        payment=use.payment,
        promotion=promotion.public_id,
        merchant_id=promotion.merchant_id,
        cofunder_id=promotion.cofunder_id,
        currency=promotion.currency,
        livemode=promotion.livemode,
        cofunder_cost=use.cofunder_cost,
    )


def _cofunder_part(cost: int, share: Decimal) -> int:
    """The co-funding bank's part of a cost: floor(cost × share); the merchant bears the rest (so the two parts
    always sum to the cost)."""
    return int((Decimal(cost) * share).to_integral_value(rounding=ROUND_FLOOR))


def _earn_points(use: PromotionUse, promotion: Promotion, captured: Captured) -> LedgerTransaction:
    from .earn import EarnSource, points_earn

    assert captured.program is not None
    return points_earn(
        cardholder_id=captured.cardholder_id,
        program=captured.program,
        amount=use.points,
        idempotency_key=f"promotion-use:{use.pk}:points",
        source=EarnSource.PROMOTION,
        funded_by=Party(OwnerKind.MERCHANT, promotion.merchant_id),
        metadata={"promotion": promotion.public_id, "payment": use.payment},
    )


def _reward_voucher(use: PromotionUse, promotion: Promotion, captured: Captured) -> Any:
    from .benefits import voucher_grant

    if promotion.reward_benefit_id is None or captured.card_id is None:
        return None
    try:
        with transaction.atomic():  # a savepoint: a sold-out voucher never fails the capture
            return voucher_grant(
                benefit_id=promotion.reward_benefit_id,
                cardholder_id=captured.cardholder_id,
                card_id=captured.card_id,
                idempotency_key=f"promotion-use:{use.pk}:voucher",
            )
    except MengkaError:
        return None


@dataclass(frozen=True)
class RefundReturn:
    """What one refund handed back: promotion points reversed, the merchant's part of the cost of what it is
    charged for (`MERCHANT_CHARGED`), which its settlement gives back, and the co-funding bank's part of the discounts
    (`DISCOUNTS`) it hands back, which its settlement takes back from the merchant."""

    points: int = 0
    merchant_cost: int = 0
    cofunding: int = 0


def merchant_part_returned(use: PromotionUse, returned_cost: int) -> int:
    """The merchant's part of `returned_cost` of a use: what is returned less the co-funding bank's part of it,
    floor(cofunder_cost × returned / cost). A function of the cost returned so far, so the parts of several partial
    refunds add up exactly, and a full return gives back exactly cost − cofunder_cost."""
    if use.cost <= 0:
        return 0
    return returned_cost - proportional_floor(use.cofunder_cost, returned_cost, use.cost)


def refund_return(*, payment: str, refunded_total: int, captured_total: int, cause: str) -> RefundReturn:
    """Hands back, cumulatively, the cost (to the budget) and the points (reversed, a debt if spent) of a refunded
    payment's promotions: returned so far = floor(given × refunded / captured). The ledger first, the promotions'
    rows last. Returns the points reversed now, the merchant's part of the charged cost handed back now and the
    co-funding bank's part of the discounts handed back now."""
    from .reversal import transaction_reverse

    reversed_now = 0
    merchant_cost = 0
    cofunding = 0
    returns = []
    for use in _uses(payment, PromotionUse.Status.CONSUMED):
        cost = proportional_floor(use.cost, refunded_total, captured_total)
        points = proportional_floor(use.points, refunded_total, captured_total)
        if cost == use.returned_cost and points == use.returned_points and refunded_total < captured_total:
            continue
        if use.promotion.kind in MERCHANT_CHARGED:
            merchant_cost += merchant_part_returned(use, cost) - merchant_part_returned(use, use.returned_cost)
        elif use.promotion.kind in DISCOUNTS and use.cost > 0:
            cofunding += proportional_floor(use.cofunder_cost, cost, use.cost) - proportional_floor(
                use.cofunder_cost, use.returned_cost, use.cost
            )
        cofunding_return(use, returned_before=use.returned_cost, returned_after=cost)
        if points > use.returned_points and use.points_transaction_id is not None:
            transaction_reverse(
                transaction_id=use.points_transaction_id,
                transaction_created_at=use.points_transaction_created_at,
                idempotency_key=f"promotion-use:{use.pk}:return:{cause}",
                refunded_total=refunded_total,
                captured_total=captured_total,
                reason=f"payment {payment}",
            )
            reversed_now += points - use.returned_points
        returns.append((use, cost))
        PromotionUse.objects.filter(pk=use.pk).update(
            returned_cost=cost, returned_points=points, updated_at=timezone.now()
        )
    for use, cost in returns:
        _give_back(use, cost - use.returned_cost, use_ended=refunded_total >= captured_total)
    return RefundReturn(points=reversed_now, merchant_cost=merchant_cost, cofunding=cofunding)


def line_out(
    promotion: str,
    name: str,
    kind: str,
    discount: int,
    points: int,
    *,
    discount_max: int | None = None,
    stamp: int | None = None,
    of: int | None = None,
    voucher: bool = False,
) -> dict[str, Any]:
    """A promotion line as the merchant API shows it, on a quote (priced) and on a payment (given)."""
    out: dict[str, Any] = {"promotion": promotion, "name": name, "kind": kind, "discount": discount, "points": points}
    if discount_max is not None:
        out["discount_max"] = discount_max
    if kind == Kind.FREQUENCY_REWARD:
        out.update(stamp=stamp, of=of, voucher=voucher)
    return out


def use_line(use: PromotionUse) -> dict[str, Any]:
    """A use as the merchant API shows it on its payment."""
    promotion = use.promotion
    return line_out(
        promotion.public_id, promotion.name, promotion.kind, use.discount, use.points,
        stamp=use.stamp, of=promotion.frequency_count, voucher=use.voucher_id is not None,
    )  # fmt: skip


def run_priced(work: Callable[[frozenset[int]], T], *, attempts: int = 8) -> T:
    """Runs `work(exclude)` — one transaction that prices a payment and reserves its promotions — again while a
    promotion it priced turns out to be gone meanwhile, leaving that promotion out the next time. Each run is
    rolled back whole before the next; after `attempts` the last refusal is raised (a 409 the caller may retry)."""
    exclude: set[int] = set()
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return work(frozenset(exclude))
        except PromotionUnavailable as gone:
            if attempt == attempts - 1:
                raise
            if gone.exclude:
                exclude.add(gone.promotion_id)
    raise AssertionError("unreachable")
