"""Find my best card: twelve months of each alliance card product's value for one cardholder's typical spending.

For every active product of an active member bank: per spend category, the year's spending × the product's earning
rate in whole points (rounded down once, for the year) at its programme's point value, plus the year's spending × its
cashback rate; plus the free privileges of the product the cardholder says they would use, at their stated value per
use, as many times as the cardholder says and the benefit's quotas, stock and window allow; less the annual fee.
Products are ranked by that net value, and the best two-card combination is found: each category's spending goes to
the card of the pair that earns more on it, both fees are paid, and a privilege both cards give is counted once.

Everything is exact (Decimal); nothing here rounds: pages round each figure they show to the fen (`core.money`).
The data is read in a constant number of queries, whatever the number of products; each product is valued in one pass
and each pair in O(categories). The spending comes from the cardholder, or from their own payment history only when
they consent to that use, which is audited. See docs/portal.md (Find my best card).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from itertools import combinations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from djmoney.money import Money

from core.audit import audit_record
from core.errors import ValidationFailed
from core.money import quantize
from members.models import Cardholder, CardProduct, PointsProgram, SpendCategory
from members.selectors import cards_of, category_rate, products_on_offer
from payments.selectors import spending_by_category
from rewards.models import Benefit
from rewards.selectors import privileges_on_offer
from rewards.services import product_eligible, units_cny

CATEGORIES: tuple[str, ...] = tuple(SpendCategory.values)
BENEFIT_KINDS: tuple[str, ...] = tuple(Benefit.Kind.values)
MONTHS = 12
YEAR = dt.timedelta(days=365)
# Per category and month: more than a personal card plausibly carries, so a typo (an extra zero or five) is refused.
MAX_MONTHLY_SPEND = Decimal("1000000")
MAX_USES_PER_YEAR = 365
HISTORY_ACTION = "alliance.best_card_history_used"
ZERO = Decimal(0)


# --- results ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryLine:
    """One category of one card over twelve months."""

    category: str
    annual_spend: Decimal
    earning_rate: Decimal
    points: int
    points_value: Decimal
    cashback_rate: Decimal
    cashback: Decimal

    @property
    def label(self) -> str:
        return str(SpendCategory(self.category).label)

    @property
    def value(self) -> Decimal:
        return self.points_value + self.cashback


@dataclass(frozen=True)
class BenefitLine:
    """A free privilege the card gives: the uses counted in a year and what they are worth (zero when its bank
    states no value)."""

    benefit: Benefit
    uses: int
    value_per_use: Decimal | None

    @property
    def value(self) -> Decimal:
        return self.uses * self.value_per_use if self.value_per_use is not None else ZERO


@dataclass(frozen=True)
class CardResult:
    product: CardProduct
    program: PointsProgram | None
    held: bool
    lines: tuple[CategoryLine, ...]
    benefits: tuple[BenefitLine, ...]
    annual_fee: Decimal

    @property
    def cards(self) -> tuple[CardResult]:
        return (self,)

    @property
    def rows(self) -> tuple[PairLine, ...]:
        """The lines as a breakdown lists them, each with its card (as a pair's are)."""
        return tuple(PairLine(self, line) for line in self.lines)

    @property
    def points(self) -> int:
        return sum(line.points for line in self.lines)

    @property
    def points_value(self) -> Decimal:
        return sum((line.points_value for line in self.lines), ZERO)

    @property
    def cashback(self) -> Decimal:
        return sum((line.cashback for line in self.lines), ZERO)

    @property
    def benefits_value(self) -> Decimal:
        return sum((line.value for line in self.benefits), ZERO)

    @property
    def net(self) -> Decimal:
        return self.points_value + self.cashback + self.benefits_value - self.annual_fee


@dataclass(frozen=True)
class PairLine:
    """A category in a two-card combination: the card of the pair it goes to, and that card's line."""

    card: CardResult
    line: CategoryLine


@dataclass(frozen=True)
class PairResult:
    first: CardResult
    second: CardResult
    lines: tuple[PairLine, ...]
    benefits: tuple[BenefitLine, ...]  # each privilege once, though both cards give it

    @property
    def cards(self) -> tuple[CardResult, CardResult]:
        return (self.first, self.second)

    @property
    def points_value(self) -> Decimal:
        return sum((pair_line.line.points_value for pair_line in self.lines), ZERO)

    @property
    def cashback(self) -> Decimal:
        return sum((pair_line.line.cashback for pair_line in self.lines), ZERO)

    @property
    def benefits_value(self) -> Decimal:
        return sum((line.value for line in self.benefits), ZERO)

    @property
    def annual_fee(self) -> Decimal:
        return self.first.annual_fee + self.second.annual_fee

    @property
    def net(self) -> Decimal:
        return self.points_value + self.cashback + self.benefits_value - self.annual_fee


@dataclass(frozen=True)
class BestCard:
    monthly_spending: dict[str, Decimal]
    benefit_uses: dict[str, int]
    ranking: list[CardResult]  # best first
    pair: PairResult | None  # None with fewer than two products

    @property
    def best(self) -> CardResult | None:
        return self.ranking[0] if self.ranking else None

    @property
    def pair_gain(self) -> Decimal | None:
        """What the pair earns over the best single card (negative when a second card does not pay for itself)."""
        best = self.best
        return self.pair.net - best.net if self.pair is not None and best is not None else None


@dataclass(frozen=True)
class HistorySpending:
    monthly_spending: dict[str, Decimal]
    since: dt.datetime
    until: dt.datetime

    @property
    def empty(self) -> bool:
        return not any(self.monthly_spending.values())


# --- input -----------------------------------------------------------------------------------------------------------


def spending_check(spending: Mapping[str, object]) -> dict[str, Decimal]:
    """The typical monthly spending in CNY by category, every category present (missing: 0). Refuses an unknown
    category, anything that is not an amount to the fen between 0 and `MAX_MONTHLY_SPEND`, and all zero."""
    checked: dict[str, Decimal] = {}
    for category in spending:
        if category not in CATEGORIES:
            raise ValidationFailed(_("Unknown spend category %(name)s.") % {"name": category}, param=category)
    for category in CATEGORIES:
        raw = spending.get(category)
        try:
            amount = Decimal(str(raw)) if raw not in (None, "") else ZERO
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or amount != quantize(amount, 2):
            raise ValidationFailed(_("Enter an amount in CNY, to the fen."), code="invalid_amount", param=category)
        if amount < 0:
            raise ValidationFailed(_("An amount cannot be negative."), code="invalid_amount", param=category)
        if amount > MAX_MONTHLY_SPEND:
            raise ValidationFailed(
                _("At most CNY %(most)s a month in one category.") % {"most": f"{MAX_MONTHLY_SPEND:,}"},
                code="amount_too_large",
                param=category,
            )
        checked[category] = amount
    if not any(checked.values()):
        raise ValidationFailed(_("Enter what you spend in at least one category."), code="no_spending")
    return checked


def uses_check(uses: Mapping[str, int] | None) -> dict[str, int]:
    """How many times a year the cardholder would use each kind of privilege (missing: 0)."""
    checked = dict.fromkeys(BENEFIT_KINDS, 0)
    for kind, count in (uses or {}).items():
        if kind not in checked:
            raise ValidationFailed(_("Unknown kind of benefit %(name)s.") % {"name": kind}, param=kind)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_USES_PER_YEAR:
            raise ValidationFailed(
                _("Enter a whole number of uses from 0 to %(most)d.") % {"most": MAX_USES_PER_YEAR}, param=kind
            )
        checked[kind] = count
    return checked


# --- the history, with consent ---------------------------------------------------------------------------------------


def _year_before(moment: dt.datetime) -> dt.datetime:
    local = timezone.localtime(moment)
    try:
        return local.replace(year=local.year - 1)
    except ValueError:  # 29 February
        return local.replace(year=local.year - 1, day=28)


def spending_from_history(
    *,
    cardholder: Cardholder,
    consented: bool,
    actor: AbstractBaseUser | AnonymousUser | None,
    now: dt.datetime | None = None,
) -> HistorySpending:
    """The cardholder's typical monthly spending from their own payments: what they spent (captured, net of refunds)
    in the twelve months to `now`, by category, divided by 12 and rounded to the fen. Only when `consented` (the
    cardholder ticked the box for this use), and then the use is audited before anything is read; without consent
    nothing is read (`ValidationFailed`, code `consent_required`)."""
    if not consented:
        raise ValidationFailed(
            _("Tick the box to let this page use your payment history."),
            code="consent_required",
            param="use_history",
        )
    until = now or timezone.now()
    since = _year_before(until)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=HISTORY_ACTION,
            obj=cardholder,
            reason="best card: typical spending from the cardholder's own payments, with their consent",
            after={"since": since.isoformat(), "until": until.isoformat()},
        )
    totals = spending_by_category(cardholder_id=cardholder.pk, since=since, until=until)
    monthly = {category: quantize(Decimal(totals.get(category, 0)) / 100 / MONTHS, 2) for category in CATEGORIES}
    return HistorySpending(monthly, since, until)


# --- the simulation --------------------------------------------------------------------------------------------------


def _program(product: CardProduct) -> PointsProgram | None:
    program: PointsProgram | None = getattr(product.bank, "points_program", None)
    return program if program is not None and program.active else None


def _lines(product: CardProduct, program: PointsProgram | None, spending: dict[str, Decimal]) -> list[CategoryLine]:
    lines = []
    for category in CATEGORIES:
        annual = spending[category] * MONTHS
        rate = category_rate(product.earning_rates or {}, category) if program is not None else ZERO
        points = int((annual * rate).to_integral_value(rounding=ROUND_FLOOR))
        cashback_rate = category_rate(product.cashback_rates or {}, category)
        lines.append(
            CategoryLine(
                category=category,
                annual_spend=annual,
                earning_rate=rate,
                points=points,
                points_value=points * program.point_value_cny if program is not None else ZERO,
                cashback_rate=cashback_rate,
                cashback=annual * cashback_rate,
            )
        )
    return lines


def _uses(benefit: Benefit, stated: int, now: dt.datetime) -> int:
    """The uses counted in the next twelve months: what the cardholder states, within every quota the benefit sets
    and the stock left, and in proportion to the part of the year the benefit stays on offer (to the nearest use,
    half up: a benefit on offer for 364 more days still counts a yearly use)."""
    bounds = [stated]
    if benefit.limit_per_year is not None:
        bounds.append(benefit.limit_per_year)
    if benefit.limit_per_month is not None:
        bounds.append(benefit.limit_per_month * MONTHS)
    if benefit.limit_per_card is not None:
        bounds.append(benefit.limit_per_card)
    if benefit.stock_left is not None:
        bounds.append(benefit.stock_left)
    uses = min(bounds)
    days_left = max(-(-(benefit.valid_until - now) // dt.timedelta(days=1)), 0)  # a day begun counts
    if days_left < YEAR.days:
        uses = (2 * uses * days_left + YEAR.days) // (2 * YEAR.days)  # uses × days left ÷ 365, half up
    return uses


def _annual_fee(product: CardProduct) -> Decimal:
    fee: Money | Decimal | None = product.annual_fee  # djmoney gives a Money; its field is typed as a Decimal
    if fee is None:
        return ZERO
    return fee.amount if isinstance(fee, Money) else Decimal(fee)


def best_card_for(
    cardholder: Cardholder,
    spending: Mapping[str, object],
    benefit_uses: Mapping[str, int] | None = None,
    *,
    now: dt.datetime | None = None,
) -> BestCard:
    """Every active alliance card product valued over twelve months of `spending` (typical monthly CNY by category)
    with the privileges used `benefit_uses` times a year (by kind of benefit), ranked; and the best two-card
    combination. Raises `ValidationFailed` for bad input. Six queries whatever the number of products."""
    monthly = spending_check(spending)
    uses_by_kind = uses_check(benefit_uses)
    now = now or timezone.now()
    products = list(products_on_offer())
    held = set(cards_of(cardholder).values_list("product_id", flat=True))
    privileges = [
        (benefit, _uses(benefit, uses_by_kind[benefit.kind], now))
        for benefit in privileges_on_offer(now=now).order_by("kind", "id")
    ]

    results: list[CardResult] = []
    for product in products:
        program = _program(product)
        benefits = tuple(
            BenefitLine(
                benefit, uses, units_cny(benefit.value_cny_units) if benefit.value_cny_units is not None else None
            )
            for benefit, uses in privileges
            if product_eligible(benefit, product)
        )
        fee = _annual_fee(product)
        lines = tuple(_lines(product, program, monthly))
        results.append(CardResult(product, program, product.pk in held, lines, benefits, fee))
    results.sort(key=lambda result: (-result.net, result.product.bank.code, result.product.code))
    return BestCard(monthly, uses_by_kind, results, _best_pair(results))


def _best_pair(ranking: list[CardResult]) -> PairResult | None:
    """The two cards worth most together. Each card's per-category values, benefit value and fee are taken once;
    the value of the privileges two cards share (counted once in a pair) is summed per benefit over the pairs of
    products that give it; then each pair costs O(categories)."""
    if len(ranking) < 2:
        return None
    values = [[line.value for line in result.lines] for result in ranking]
    fixed = [result.benefits_value - result.annual_fee for result in ranking]
    givers: dict[int, list[int]] = defaultdict(list)
    worth: dict[int, Decimal] = {}
    for index, result in enumerate(ranking):
        for line in result.benefits:
            givers[line.benefit.pk].append(index)
            worth[line.benefit.pk] = line.value
    shared: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for benefit_id, indexes in givers.items():
        if worth[benefit_id]:
            for pair in combinations(indexes, 2):
                shared[pair] += worth[benefit_id]
    best: tuple[Decimal, int, int] | None = None
    for i, j in combinations(range(len(ranking)), 2):
        net = sum(map(max, values[i], values[j]), ZERO) + fixed[i] + fixed[j] - shared.get((i, j), ZERO)
        if best is None or net > best[0]:
            best = (net, i, j)
    assert best is not None
    first, second = ranking[best[1]], ranking[best[2]]
    lines = tuple(
        PairLine(first, mine) if mine.value >= theirs.value else PairLine(second, theirs)
        for mine, theirs in zip(first.lines, second.lines, strict=True)
    )
    seen = {line.benefit.pk for line in first.benefits}
    benefits = first.benefits + tuple(line for line in second.benefits if line.benefit.pk not in seen)
    return PairResult(first, second, lines, benefits)
