"""Personal data at rest (PIPL): the masked forms operators recognise a person by, and the normalised keys their
keyed hashes are taken of. The values themselves are stored only encrypted (`core.crypto.encrypt`).

Data migrations use these too, so a row encrypted by a migration is found by the same search as one written today.
"""

from __future__ import annotations

import unicodedata

from .crypto import keyed_hash

# Figures about cardholders are shown to merchants only for groups at least this large, so no one can be singled out.
MIN_COHORT = 20

NAME_PURPOSE = "person-name"
EMAIL_PURPOSE = "person-email"
PHONE_PURPOSE = "person-phone"


def name_key(name: str) -> str:
    """What two spellings of one name share: NFKC (full-width letters), single spaces, case folded."""
    return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()


def name_hash(name: str) -> str:
    return keyed_hash(name_key(name), purpose=NAME_PURPOSE)


def email_hash(email: str) -> str:
    return keyed_hash(email.strip().casefold(), purpose=EMAIL_PURPOSE)


def phone_digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isascii() and ch.isdigit())


def phone_hash(phone: str) -> str:
    """Of the digits only: "+86 591 1234 5678" and "8659112345678" are one number."""
    return keyed_hash(phone_digits(phone), purpose=PHONE_PURPOSE)


def mask_name(name: str) -> str:
    """A name shown without being given: "张*明", "王*", "欧**明", "J*** S***" (each word's initial)."""
    words = unicodedata.normalize("NFKC", name).split()
    if len(words) > 1:
        return " ".join(word[0] + "*" * (len(word) - 1) for word in words)
    word = words[0] if words else ""
    if len(word) <= 1:
        return "*" * len(word)
    if len(word) == 2:
        return word[0] + "*"
    return word[0] + "*" * (len(word) - 2) + word[-1]


def mask_email(email: str) -> str:
    """ "owner@example.com" → "o****@example.com": the first letter and the domain."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return mask_name(email)
    if len(local) <= 1:
        return "*" * len(local) + "@" + domain
    return local[0] + "*" * (len(local) - 1) + "@" + domain
