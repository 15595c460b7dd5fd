"""The unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters, the last a mod-31 check."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_character(first17: str) -> str:
    total = sum(ALPHABET.index(char) * weight for char, weight in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def uscc_valid(code: str) -> bool:
    if len(code) != 18 or any(char not in ALPHABET for char in code):
        return False
    if not code[:2].isdigit() and code[0] not in "159ABCDEFGHJNY":  # registration authority
        return False
    if not code[2:8].isdigit():  # the administrative division code
        return False
    return uscc_check_character(code[:17]) == code[17]
