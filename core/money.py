"""Money: the one place that knows minor units and rounds.

Inside, amounts are `djmoney` `Money` (Decimal); in the database and on the API they are integer minor units plus an
ISO currency. JPY has no minor unit. Rounding happens here and nowhere else.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from djmoney.money import Money

from .errors import ValidationFailed

MINOR_UNIT_EXPONENT: dict[str, int] = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "JPY": 0}
SUPPORTED_CURRENCIES = tuple(MINOR_UNIT_EXPONENT)
# Largest amount any single payment may carry, in minor units (fits comfortably in a bigint and in JSON numbers).
MAX_MINOR_AMOUNT = 10**13


def exponent(currency: str) -> int:
    try:
        return MINOR_UNIT_EXPONENT[currency]
    except KeyError:
        raise ValidationFailed(
            f"Unsupported currency {currency!r}; use one of {', '.join(SUPPORTED_CURRENCIES)}.",
            code="currency_not_supported",
            param="currency",
        ) from None


def validate_minor_amount(amount: object, currency: str, *, param: str = "amount", allow_zero: bool = False) -> int:
    exponent(currency)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("Amounts are whole numbers of minor units.", code="invalid_amount", param=param)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ValidationFailed("The amount must be positive.", code="invalid_amount", param=param)
    if amount > MAX_MINOR_AMOUNT:
        raise ValidationFailed("The amount is too large.", code="amount_too_large", param=param)
    return amount


def to_money(minor: int, currency: str) -> Money:
    return Money(Decimal(minor).scaleb(-exponent(currency)), currency)


def to_minor(money: Money) -> int:
    quantum = Decimal(1).scaleb(-exponent(str(money.currency)))
    return int((money.amount / quantum).to_integral_value(rounding=ROUND_HALF_EVEN))


def quantize(value: Decimal, places: int, *, down: bool = False) -> Decimal:
    """Rounds `value` to `places` decimals: half-even by default, toward zero with `down` (in favour of the payer)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN if down else ROUND_HALF_EVEN)


def proportional_floor(total: int, numerator: int, denominator: int) -> int:
    """floor(total × numerator / denominator) in exact integers: the cumulative rule for partial refunds."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return (total * numerator) // denominator


def format_minor(minor: int, currency: str) -> str:
    return f"{to_money(minor, currency).amount:,.{exponent(currency)}f} {currency}"


def allocate(total: int, weights: list[Decimal]) -> list[int]:
    """Splits the integer `total` in proportion to `weights`, summing exactly to `total`.

    Each part gets the floor of its exact share; the units left over go, one each, to the largest fractional
    remainders, ties to the earlier weight — so the same inputs always give the same split.
    """
    if total < 0:
        raise ValueError("total must not be negative")
    places = max((-weight.as_tuple().exponent for weight in weights if weight.is_finite()), default=0)  # type: ignore[operator]
    # Exact whatever the weights' size: Decimal arithmetic (scaleb included) rounds to the context's 28 digits, so a
    # weight that is an exact share's numerator (revenue share) would lose its last digits.
    scaled = [int(Fraction(weight) * 10 ** max(places, 0)) for weight in weights]
    weight_sum = sum(scaled)
    if weight_sum <= 0 or any(weight < 0 for weight in weights):
        raise ValueError("weights must be non-negative with a positive sum")
    parts = [total * weight // weight_sum for weight in scaled]
    remainders = [total * weight % weight_sum for weight in scaled]
    left = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda index: (-remainders[index], index))
    for index in by_remainder[:left]:
        parts[index] += 1
    return parts


def round_to_zero_sum(amounts: list[int], per_minor: int) -> list[int]:
    """Rounds signed amounts kept `per_minor` times finer than the minor unit (the ledger's ten-thousandths: 100 per
    fen) to minor units, once, by largest remainder, so that amounts summing to zero still sum to exactly zero.

    Each amount gets the floor of its exact value in minor units; the units the floors lost (Σ remainders ÷
    `per_minor`, a whole number because Σ amounts is a multiple of `per_minor`) go, one each, to the largest
    remainders. Ties go to the earlier amount: callers list their parties in their stated tie order.
    Every result is the floor or the ceiling of its exact value.
    """
    if per_minor <= 0:
        raise ValueError("per_minor must be positive")
    total = sum(amounts)
    if total % per_minor:
        raise ValueError("the amounts must sum to a whole number of minor units")
    floors = [amount // per_minor for amount in amounts]
    remainders = [amount - floor * per_minor for amount, floor in zip(amounts, floors, strict=True)]
    left = total // per_minor - sum(floors)
    by_remainder = sorted(range(len(amounts)), key=lambda index: (-remainders[index], index))
    for index in by_remainder[:left]:
        if remainders[index] == 0:
            break
        floors[index] += 1
    return floors
