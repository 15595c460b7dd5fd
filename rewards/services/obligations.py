"""What points are worth in CNY, and what one party owes another for them (or for a promotion's co-funding).

Currency amounts are integer ten-thousandths of the currency (the ledger's unit), rounded once. An obligation is
posted in the same transaction as what it pays for, between the two parties' clearing accounts in its currency (CNY
unless said otherwise), which the posting locks with its other accounts (`clearing_pair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from core.money import exponent
from members.models import PointsProgram

from ..models import CURRENCY_SCALE
from .accounts import CNY, AccountRef, clearing_ref
from .posting import Posting


def cny_units(amount: Decimal, rounding: str = ROUND_HALF_UP) -> int:
    """A CNY amount as integer ten-thousandths (the ledger's currency unit), rounded once with `rounding`."""
    return int((amount * CURRENCY_SCALE).to_integral_value(rounding=rounding))


def units_cny(units: int) -> Decimal:
    """Integer ten-thousandths as a CNY amount, exactly (the inverse of `cny_units`: nothing is rounded)."""
    return (Decimal(units) / CURRENCY_SCALE).quantize(1 / Decimal(CURRENCY_SCALE))


def points_value_units(points: int, program: PointsProgram, rounding: str = ROUND_HALF_UP) -> int:
    return cny_units(Decimal(points) * program.point_value_cny, rounding)


@dataclass(frozen=True)
class Party:
    """Who funds or receives a CNY obligation: ("bank", id), ("merchant", id) or ("alliance", 0)."""

    kind: str
    id: int

    def as_list(self) -> list[Any]:
        return [self.kind, self.id]


def clearing_pair(payer: Party | None, payee: Party | None, currency: str = CNY) -> list[AccountRef]:
    """The two clearing accounts in `currency` an obligation between `payer` and `payee` moves, for the posting to
    lock."""
    if payer is None or payee is None or payer == payee:
        return []
    return [clearing_ref(payer.kind, payer.id, currency), clearing_ref(payee.kind, payee.id, currency)]


def obligation(posting: Posting, *, payer: Party, payee: Party, units: int, currency: str = CNY) -> None:
    """`payer` owes `payee` `units` (ten-thousandths of `currency`): their clearing accounts in that currency, locked
    with the posting's others (`clearing_pair`)."""
    if units <= 0 or payer == payee:
        return
    posting.leg(posting.account(clearing_ref(payer.kind, payer.id, currency)), -units)
    posting.leg(posting.account(clearing_ref(payee.kind, payee.id, currency)), units)


def minor_units(minor: int, currency: str) -> int:
    """An amount in minor units of `currency` as the ledger's ten-thousandths of it (100 per fen, 10000 per yen):
    exact, nothing is rounded."""
    return minor * (CURRENCY_SCALE // 10 ** exponent(currency))
