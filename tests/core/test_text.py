from __future__ import annotations

import pytest

from core.text import ascii_digits


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0123456789", True), ("", False), ("12a", False), ("²", False), ("٣", False), ("１２", False), (" 1", False)],
)
def test_ascii_digits(value: str, expected: bool) -> None:
    assert ascii_digits(value) is expected
