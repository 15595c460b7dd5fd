"""Exchanging points between two banks' programmes, with the inter-bank CNY obligation and the alliance's fee.

rate = value(from) × (1 − fee) / value(to). Every rounding favours the alliance: the points out and the receiving
bank's share are rounded down, what the paying bank owes is rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from core.errors import ValidationFailed
from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import ALLIANCE_ID, bank_points_account, clearing_account, debt_account, wallet_account
from .expiry import expire_overdue
from .lots import credit_wallet, spend, today
from .obligations import points_value_units
from .posting import Actor, Kind, begin, finish, request_hash, require_positive, retry_on_conflict


@dataclass(frozen=True)
class ExchangeQuote:
    rate: Decimal
    points_out: int
    payer_units: int
    payee_units: int
    fee_units: int


def exchange_quote(*, from_program: PointsProgram, to_program: PointsProgram, amount: int) -> ExchangeQuote:
    """rate = value(from) × (1 − fee) / value(to); points out are rounded down and the CNY the paying bank owes is
    rounded up, the receiving bank's share down: every rounding remainder goes to the alliance."""
    require_positive(amount)
    if from_program.pk == to_program.pk:
        raise ValidationFailed(_("Choose two different programs."), param="to_program")
    if not (from_program.active and to_program.active):
        raise ValidationFailed(_("Both programs must be active."), param="to_program")
    if amount < settings.LEDGER_EXCHANGE_MIN_POINTS:
        raise ValidationFailed(
            _("The minimum exchange is %(minimum)d points.") % {"minimum": settings.LEDGER_EXCHANGE_MIN_POINTS},
            param="amount",
        )
    fee_rate = Decimal(settings.LEDGER_EXCHANGE_FEE_RATE)
    rate = (from_program.point_value_cny * (1 - fee_rate) / to_program.point_value_cny).quantize(
        Decimal("0.0000000001"), rounding=ROUND_FLOOR
    )
    points_out = int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_FLOOR))
    if points_out < 1:
        raise ValidationFailed(_("Too few points to exchange at this rate."), param="amount")
    payer_units = points_value_units(amount, from_program, ROUND_CEILING)
    payee_units = points_value_units(points_out, to_program, ROUND_FLOOR)
    return ExchangeQuote(rate, points_out, payer_units, payee_units, payer_units - payee_units)


@retry_on_conflict
def points_exchange(
    *,
    cardholder_id: int,
    from_program: PointsProgram,
    to_program: PointsProgram,
    amount: int,
    idempotency_key: str,
    actor: Actor = None,
) -> LedgerTransaction:
    """Moves a cardholder's points from one bank's program to another's, with the inter-bank CNY obligation."""
    quote = exchange_quote(from_program=from_program, to_program=to_program, amount=amount)
    digest = request_hash(
        op="exchange", cardholder=cardholder_id, src=from_program.pk, dst=to_program.pk, amount=amount
    )
    with transaction.atomic():
        src_wallet = wallet_account(cardholder_id, from_program)
        expire_overdue(src_wallet)
        src_sink = bank_points_account(from_program, Purpose.EXCHANGE, cardholder_id)
        dst_wallet, dst_debt = wallet_account(cardholder_id, to_program), debt_account(cardholder_id, to_program)
        dst_issuance = bank_points_account(to_program, Purpose.ISSUANCE, cardholder_id)
        payer, payee = (
            clearing_account(OwnerKind.BANK, from_program.bank_id),
            clearing_account(OwnerKind.BANK, to_program.bank_id),
        )
        fees = clearing_account(OwnerKind.ALLIANCE, ALLIANCE_ID)
        posting = begin(
            kind=Kind.EXCHANGE,
            key=idempotency_key,
            digest=digest,
            accounts=[src_wallet, src_sink, dst_wallet, dst_debt, dst_issuance, payer, payee, fees],
            actor=actor,
            metadata={
                "cardholder_id": cardholder_id,
                "program_id": from_program.pk,
                "to_program_id": to_program.pk,
                "points_out": quote.points_out,
                "payer_units": quote.payer_units,
                "payee_units": quote.payee_units,
                "fee_units": quote.fee_units,
            },
            points=amount,
            rate=quote.rate,
        )
        if isinstance(posting, LedgerTransaction):
            return posting
        spend(posting, src_wallet, src_sink, amount)
        posting.leg(dst_issuance, -quote.points_out)
        credit_wallet(
            posting, wallet=dst_wallet, debt=dst_debt, program=to_program, amount=quote.points_out, earned_on=today()
        )
        posting.leg(payer, -quote.payer_units)
        posting.leg(payee, quote.payee_units)
        posting.leg(fees, quote.fee_units)
        return finish(posting)
