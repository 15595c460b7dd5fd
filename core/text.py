"""Small checks on text from outside."""

from __future__ import annotations


def ascii_digits(value: str) -> bool:
    """Only 0-9, at least one. `str.isdigit()` alone also accepts "²" (which `int()` refuses) and other scripts' digits
    (which `int()` reads), neither of which belongs in a card number, an account number or an id."""
    return value.isascii() and value.isdigit()


def id_or_none(value: str | None) -> int | None:
    """A database id from a URL or query string: 1 to 18 ASCII digits (within a 64-bit integer), else None."""
    if value and len(value) <= 18 and ascii_digits(value):
        return int(value)
    return None
