"""Points on payments: earned on capture in the issuer's program, reversed cumulatively on refunds and voids.

Points are earned on the cash actually captured, at the card product's rate for the merchant's spend category. Only
CNY payments earn: Mengka converts no currency, and a points program is valued in CNY.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from core.money import proportional_floor, quantize, to_money
from members.models import Card, PointsProgram
from members.selectors import active_program, category_rate

from .models import PaymentIntent


def earning_rate(card: Card, spend_category: str) -> Decimal:
    return category_rate(card.product.earning_rates or {}, spend_category)


def points_for_capture(intent: PaymentIntent) -> int:
    if intent.card is None or intent.currency != "CNY" or intent.amount_captured <= 0:
        return 0
    cash = to_money(intent.amount_captured, intent.currency).amount
    return int((cash * earning_rate(intent.card, intent.spend_category)).to_integral_value(rounding=ROUND_FLOOR))


def points_to_have_reversed(intent: PaymentIntent, refunded_total: int) -> int:
    """reversed so far = floor(earned × refunded total / captured total), so partial refunds never drift."""
    if intent.amount_captured <= 0:
        return 0
    return proportional_floor(intent.points_earned, refunded_total, intent.amount_captured)


def issuer_program(intent: PaymentIntent) -> object | None:
    from . import ledger_bridge

    return ledger_bridge.program_for(intent)


def post_earn(intent: PaymentIntent, points: int) -> bool:
    """Posts the earn to the ledger, idempotently by payment; False when the issuer has no points programme."""
    from . import ledger_bridge

    return ledger_bridge.earn(intent=intent, points=points, idempotency_key=earn_key(intent))


def earn_key(intent: PaymentIntent) -> str:
    return f"payment:{intent.public_id}:earn"


def post_reversal(intent: PaymentIntent, points: int, *, cause: str) -> None:
    from . import ledger_bridge

    ledger_bridge.reverse(
        intent=intent,
        points=points,
        idempotency_key=f"payment:{intent.public_id}:reverse:{cause}",
        earn_key=earn_key(intent),
    )


# --- paying with points (积分抵现) -----------------------------------------------------------------------------------

POINTS_HOLD_VALIDITY_DAYS = 8  # outlives the longest authorisation a channel gives (7 days)


def program_of_bank(bank_id: int | None) -> PointsProgram | None:
    if bank_id is None:
        return None
    return active_program(bank_id)


def points_value(points: int, program: PointsProgram) -> int:
    """What `points` pay for, in CNY minor units (fen), rounded down: a point never buys more than it is worth."""
    return int(quantize(Decimal(points) * program.point_value_cny * 100, 0, down=True))


def points_affordable(*, cardholder_id: int, program: PointsProgram, amount: int) -> int:
    """The most points a payment of `amount` can take: what the wallet has, leaving at least 0.01 to pay in cash."""
    from rewards.services import wallet_account

    available = max(wallet_account(cardholder_id, program).available, 0)
    per_point = program.point_value_cny * 100
    most = int(((Decimal(amount - 1)) / per_point).to_integral_value(rounding=ROUND_FLOOR)) if per_point > 0 else 0
    return max(0, min(available, most))
