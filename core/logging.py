"""Structured logs: one JSON object a line, with the request id, never a secret or a card number."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from .requestid import get_request_id

# 13 to 19 digits, optionally grouped by spaces or dashes: anything that may be a card number (PAN).
_PAN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SECRET_PAIRS = re.compile(
    r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|cvv|cvc|otp|code)([\"']?\s*[:=]\s*[\"']?)([^\s,\"'&}]+)"
)
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
# Secrets shown once, by their prefix: API keys, webhook signing secrets (URL-safe base64: `-` and `_` are part of
# the secret) and agreement tokens.
_KEYS = re.compile(r"\b(sk|rk|whsec|agt)_(?:(?:test|live)_)?[A-Za-z0-9_-]{6,}")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_pan(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return f"[PAN ****{digits[-4:]}]"
    return match.group(0)


def redact(text: str) -> str:
    """Masks card numbers (Luhn-valid digit runs), bearer tokens, API keys, webhook secrets, agreement tokens and
    key=value secrets."""
    text = _PAN.sub(_mask_pan, text)
    text = _BEARER.sub("Bearer [REDACTED]", text)
    text = _KEYS.sub(lambda m: m.group(1) + "_[REDACTED]", text)
    return _SECRET_PAIRS.sub(lambda m: m.group(1) + m.group(2) + "[REDACTED]", text)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_request_id()
        return True


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so no formatter can leak an argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", get_request_id()),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = redact(record.exc_text)
        return json.dumps(payload, ensure_ascii=False)
