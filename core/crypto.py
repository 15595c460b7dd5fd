"""Field encryption and keyed hashes. Keys come from settings (the environment), never from the database."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(("mengka-field-v1:" + settings.FIELD_ENCRYPTION_KEY).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("cannot decrypt: wrong FIELD_ENCRYPTION_KEY or tampered value") from exc


def keyed_hash(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 of `value` under FINGERPRINT_KEY, separated by purpose: equal inputs match, nothing reverses it."""
    key = hashlib.sha256(("mengka-fingerprint-v1:" + purpose + ":" + settings.FINGERPRINT_KEY).encode()).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def mask(value: str, *, keep_start: int = 0, keep_end: int = 4, fill: str = "*") -> str:
    if len(value) <= keep_start + keep_end:
        return fill * len(value)
    return value[:keep_start] + fill * (len(value) - keep_start - keep_end) + value[len(value) - keep_end :]
