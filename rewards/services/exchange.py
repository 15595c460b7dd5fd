"""Exchanging points between two banks' programmes, with the inter-bank CNY obligation and the alliance's fee.

rate = value(from) × (1 − fee) / value(to). Every rounding favours the alliance: the points out and the receiving
bank's share are rounded down, what the paying bank owes is rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings
from django.utils.translation import gettext as _

from core.errors import ValidationFailed
from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import ALLIANCE_ID, bank_ref, clearing_ref, debt_ref, wallet_ref
from .expiry import expire_overdue
from .lots import credit_wallet, spend, today
from .obligations import points_value_units
from .posting import Actor, Kind, begin, finish, keyed, request_hash, require_positive, retry_on_conflict


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
    src_wallet, src_breakage = (
        wallet_ref(cardholder_id, from_program),
        bank_ref(from_program, Purpose.BREAKAGE, cardholder_id),
    )
    src_sink = bank_ref(from_program, Purpose.EXCHANGE, cardholder_id)
    dst_wallet, dst_debt = wallet_ref(cardholder_id, to_program), debt_ref(cardholder_id, to_program)
    dst_issuance = bank_ref(to_program, Purpose.ISSUANCE, cardholder_id)
    payer, payee = clearing_ref(OwnerKind.BANK, from_program.bank_id), clearing_ref(OwnerKind.BANK, to_program.bank_id)
    fees = clearing_ref(OwnerKind.ALLIANCE, ALLIANCE_ID)

    def post() -> LedgerTransaction:
        posting = begin(
            kind=Kind.EXCHANGE,
            key=idempotency_key,
            digest=digest,
            refs=[src_wallet, src_breakage, src_sink, dst_wallet, dst_debt, dst_issuance, payer, payee, fees],
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
        wallet = posting.account(src_wallet)
        lots = expire_overdue(wallet, posting.account(src_breakage))
        spend(posting, wallet, posting.account(src_sink), amount, lots)
        posting.leg(posting.account(dst_issuance), -quote.points_out)
        credit_wallet(
            posting,
            wallet=posting.account(dst_wallet),
            debt=posting.account(dst_debt),
            program=to_program,
            amount=quote.points_out,
            earned_on=today(),
        )
        posting.leg(posting.account(payer), -quote.payer_units)
        posting.leg(posting.account(payee), quote.payee_units)
        posting.leg(posting.account(fees), quote.fee_units)
        return finish(posting)

    return keyed(LedgerTransaction, idempotency_key, digest, post)
