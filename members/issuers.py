"""The issuer verification interface (协议支付-style signing).

Binding a card or an account needs the issuing member to confirm the holder: the issuer sends a one-time code to the
phone it has on file, and checks what the cardholder types. Mengka never sees nor stores the code. A real bank's
implementation is one class implementing `IssuerVerifier`, selected by the `MEMBERS_ISSUER_VERIFIER` setting (a dotted
path); the sandbox below stands in for every bank in development and tests.

Nothing crossing this interface is a card number: the subject is the keyed fingerprint of the card or account.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import cache as default_cache
from django.utils import timezone
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

CODE_TTL = dt.timedelta(minutes=5)
DEFAULT_VERIFIER = "members.issuers.SandboxIssuerVerifier"


@dataclass(frozen=True)
class StartResult:
    reference: str
    expires_at: dt.datetime
    phone_hint: str


class VerifyOutcome(enum.StrEnum):
    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class VerifyResult:
    outcome: VerifyOutcome

    @property
    def verified(self) -> bool:
        return self.outcome is VerifyOutcome.VERIFIED


class IssuerVerifier(Protocol):
    def start(self, *, bank_code: str, subject_fingerprint: str, holder_key: str, phone_hint: str) -> StartResult:
        """Asks the issuer to send a one-time code to the holder's phone on file; returns the issuer's reference."""
        ...

    def verify(self, *, reference: str, code: str) -> VerifyResult:
        """Asks the issuer whether `code` is the one it sent for `reference`."""
        ...


class SandboxIssuerVerifier:
    """Every member bank in development and tests. Codes are kept hashed in a cache; the plain code goes only to a
    simulated phone inbox (read by the dev-only page) and, when DEBUG, to the console."""

    def __init__(self, *, cache: Any = None, announce: bool = True) -> None:
        self.cache = cache if cache is not None else default_cache
        self.announce = announce

    @staticmethod
    def _digest(reference: str, code: str) -> str:
        return hmac.new(reference.encode(), code.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def inbox_key(holder_key: str) -> str:
        return f"sandbox-issuer:inbox:{holder_key}"

    def start(self, *, bank_code: str, subject_fingerprint: str, holder_key: str, phone_hint: str) -> StartResult:
        reference = "sbx_" + secrets.token_hex(12)
        code = f"{secrets.randbelow(1_000_000):06d}"
        expires_at = timezone.now() + CODE_TTL
        ttl = int(CODE_TTL.total_seconds())
        self.cache.set(f"sandbox-issuer:challenge:{reference}", self._digest(reference, code), ttl)
        inbox = [{"reference": reference, "bank": bank_code, "code": code, "sent_at": timezone.now().isoformat()}]
        inbox += (self.cache.get(self.inbox_key(holder_key)) or [])[:9]
        self.cache.set(self.inbox_key(holder_key), inbox, ttl)
        if self.announce and settings.DEBUG:
            logger.info("sandbox OTP for reference %s: %s", reference, code)
        return StartResult(reference=reference, expires_at=expires_at, phone_hint=phone_hint)

    def verify(self, *, reference: str, code: str) -> VerifyResult:
        key = f"sandbox-issuer:challenge:{reference}"
        digest = self.cache.get(key)
        if digest is None:
            return VerifyResult(VerifyOutcome.EXPIRED)
        if not hmac.compare_digest(digest, self._digest(reference, code.strip())):
            return VerifyResult(VerifyOutcome.WRONG_CODE)
        self.cache.delete(key)
        return VerifyResult(VerifyOutcome.VERIFIED)

    def sent_codes(self, holder_key: str) -> list[dict[str, str]]:
        """The simulated phone's inbox, newest first (dev page and demo only)."""
        return list(self.cache.get(self.inbox_key(holder_key)) or [])

    def code_for(self, holder_key: str, reference: str) -> str:
        for message in self.sent_codes(holder_key):
            if message["reference"] == reference:
                return message["code"]
        raise LookupError("no sandbox code for that reference")


@cache
def _verifier_class(path: str) -> Any:
    return import_string(path)


def get_verifier() -> IssuerVerifier:
    """The configured implementation (`MEMBERS_ISSUER_VERIFIER`), the sandbox by default."""
    verifier: IssuerVerifier = _verifier_class(getattr(settings, "MEMBERS_ISSUER_VERIFIER", DEFAULT_VERIFIER))()
    return verifier
