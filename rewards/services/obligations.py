"""What points are worth in CNY, and the CNY one party owes another for them.

CNY amounts are integer ten-thousandths of a yuan (the ledger's unit), rounded once. An obligation is posted in the
same transaction as the points it pays for, between the two parties' clearing accounts, which the posting locks with
its other accounts (`clearing_pair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from members.models import PointsProgram

from ..models import CURRENCY_SCALE
from .accounts import AccountRef, clearing_ref
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


def clearing_pair(payer: Party | None, payee: Party | None) -> list[AccountRef]:
    """The two clearing accounts an obligation between `payer` and `payee` moves, for the posting to lock."""
    if payer is None or payee is None or payer == payee:
        return []
    return [clearing_ref(payer.kind, payer.id), clearing_ref(payee.kind, payee.id)]


def obligation(posting: Posting, *, payer: Party, payee: Party, units: int) -> None:
    """`payer` owes `payee` `units`: their clearing accounts, locked with the posting's others (`clearing_pair`)."""
    if units <= 0 or payer == payee:
        return
    posting.leg(posting.account(clearing_ref(payer.kind, payer.id)), -units)
    posting.leg(posting.account(clearing_ref(payee.kind, payee.id)), units)
