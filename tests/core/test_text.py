from __future__ import annotations

import pytest

from core.text import ascii_digits


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0123456789", True), ("", False), ("12a", False), ("²", False), ("٣", False), ("１２", False), (" 1", False)],
)
def test_ascii_digits(value: str, expected: bool) -> None:
    assert ascii_digits(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("42", 42), ("9" * 18, 10**18 - 1), ("9" * 19, None), ("", None), (None, None), ("²", None), ("-1", None)],
)
def test_id_or_none(value: str | None, expected: int | None) -> None:
    from core.text import id_or_none

    assert id_or_none(value) == expected
