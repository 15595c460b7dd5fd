"""The clearing channel: where net positions are settled. Today the channel simulator's clearing channel, over signed
HTTP (`POST /v1/clearing/instructions`, `GET /v1/clearing/instructions/{reference}`; docs/simulator.md).

How transport failures map to outcomes (as for payouts): the request never left → FAILED (nothing accepted); it left
and no answer came (a read timeout, a 504) → UNKNOWN, settled by an inquiry; the channel refused it (4xx) → DECLINED;
the channel said it failed (5xx) → FAILED.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    ANSWERED = "answered"
    DECLINED = "declined"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    state: str = ""  # accepted, confirmed, failed, not_found (when answered)
    channel_id: str = ""
    reason: str = ""
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstructionRequest:
    reference: str
    party: str
    direction: str
    amount: int
    currency: str


class SimulatorClearingChannel:
    def __init__(self) -> None:
        config = settings.SIMULATOR
        self.base_url = str(config["URL"]).rstrip("/")
        self.key_id, self.secret = config["KEY_ID"], config["SECRET"]
        self.channel = settings.CLEARING_CHANNEL
        self.timeout = httpx.Timeout(config["READ_TIMEOUT"], connect=config["CONNECT_TIMEOUT"])

    def _sign(self, method: str, target: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        message = f"{timestamp}.{method}.{target}.".encode() + body
        signature = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return {"X-Sim-Key-Id": self.key_id, "X-Sim-Timestamp": timestamp, "X-Sim-Signature": signature}

    def _call(self, method: str, target: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], bool]:
        """(status, body, sent): status 0 when no answer came; sent False when the request provably never left."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **self._sign(method, target, raw)}
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.request(method, self.base_url + target, content=raw, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return 0, {}, False
        except httpx.TransportError as exc:
            logger.warning("%s %s: no answer (%s)", method, target, type(exc).__name__)
            return 0, {}, True
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        return response.status_code, payload if isinstance(payload, dict) else {}, True

    @staticmethod
    def _answer(body: dict[str, Any]) -> Answer:
        state = str(body.get("state") or "")
        if state not in ("accepted", "confirmed", "failed", "not_found"):
            return Answer(Outcome.UNKNOWN, reason="bad_response")
        return Answer(
            Outcome.ANSWERED,
            state,
            channel_id=str(body.get("id") or ""),
            reason=str(body.get("failure_reason") or ""),
            body=body,
        )

    def instruct(self, request: InstructionRequest) -> Answer:
        body = {
            "channel": self.channel,
            "reference": request.reference,
            "party": request.party,
            "direction": request.direction,
            "amount": request.amount,
            "currency": request.currency,
        }
        status, payload, sent = self._call("POST", "/v1/clearing/instructions", body)
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        code = str((error or {}).get("code") or "")
        if not sent:
            return Answer(Outcome.FAILED, reason="channel_unreachable")
        if status in (0, 504, 409):
            return Answer(Outcome.UNKNOWN, reason=code or "timeout")
        if status >= 500:
            return Answer(Outcome.FAILED, reason=code or "channel_error")
        if status >= 400:
            return Answer(Outcome.DECLINED, reason=code or "refused", body=payload)
        return self._answer(payload)

    def inquire(self, reference: str) -> Answer:
        status, payload, _sent = self._call("GET", f"/v1/clearing/instructions/{quote(reference, safe='')}")
        if status != 200:
            return Answer(Outcome.UNKNOWN, reason="inquiry_failed")
        return self._answer(payload)


def clearing_channel() -> SimulatorClearingChannel:
    return SimulatorClearingChannel()
