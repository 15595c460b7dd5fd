"""The request signature shared by the server and the client.

`X-Sim-Signature` is the hex HMAC-SHA256, under the caller's shared secret, of
`timestamp + "." + METHOD + "." + path + "." + body`, where `path` is the request target exactly as sent (with its
query string, if any) and `body` the raw request body (empty for GET).
"""

from __future__ import annotations

import hashlib
import hmac
import time

KEY_ID_HEADER = "X-Sim-Key-Id"
TIMESTAMP_HEADER = "X-Sim-Timestamp"
SIGNATURE_HEADER = "X-Sim-Signature"

DEFAULT_KEY_ID = "mengka-dev"
DEFAULT_SECRET = "mengka-dev-simulator-secret"  # the development default; production-like runs pass --keys
MAX_SKEW_SECONDS = 300


def signature(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    key_id: str, secret: str, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {
        KEY_ID_HEADER: key_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, method, path, body),
    }


def verify(
    keys: dict[str, str],
    key_id: str | None,
    timestamp: str | None,
    sig: str | None,
    method: str,
    path: str,
    body: bytes,
) -> str | None:
    """Return None when the request is authentic, else the refusal code."""
    if not key_id or not timestamp or not sig:
        return "signature_missing"
    secret = keys.get(key_id)
    if secret is None:
        return "unknown_key"
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        return "stale_timestamp"
    if not hmac.compare_digest(signature(secret, timestamp, method, path, body), sig.lower()):
        return "bad_signature"
    return None


def parse_keys(spec: str) -> dict[str, str]:
    """`id:secret,id2:secret2` → {id: secret}."""
    keys: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key_id, sep, secret = part.partition(":")
        if not sep or not key_id or not secret:
            raise ValueError(f"bad key spec {part!r}: expected id:secret")
        keys[key_id] = secret
    return keys
