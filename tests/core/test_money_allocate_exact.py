"""`allocate` with weights longer than Decimal's 28-digit context: exact, as revenue shares need."""

from __future__ import annotations

from decimal import Decimal

from core.money import allocate


def test_weights_beyond_the_decimal_context_are_compared_exactly() -> None:
    # Two weights that differ only in their 41st digit: rounded to 28 digits they would tie and the earlier one would
    # take the odd unit; exactly, the later one is larger and takes it.
    assert allocate(1, [Decimal(10**40), Decimal(10**40 + 1)]) == [0, 1]
    assert allocate(1, [Decimal(10**40 + 1), Decimal(10**40)]) == [1, 0]
    # 1/3 : 2/3 as exact numerators over a 45-digit denominator: 100 splits 33 / 67 (remainders 1/3 and 2/3).
    third = 10**45 // 3
    assert allocate(100, [Decimal(third), Decimal(2 * third + 1)]) == [33, 67]
