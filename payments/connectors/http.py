"""HTTP connectors: connect and read timeouts, signed requests, retries only for calls that are safe to repeat.

`HttpConnector` is the base a real bank's connector subclasses (signing, paths and response mapping are its
hooks). `SimulatorConnector` talks to the channel simulator (see docs/simulator.md).

How transport failures map to outcomes — the rule that keeps money safe:
- the request never left (connection refused, DNS): FAILED, nothing charged;
- the request left and no answer came (read timeout, a 504 from the channel, a broken connection): UNKNOWN;
- the channel answered with a refusal: DECLINED (the card or account said no) or FAILED (the channel said it did not
  process the request, e.g. a 500 "nothing was charged").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from django.conf import settings

from .base import (
    AccountBalance,
    AuthorizeRequest,
    CaptureRequest,
    ChannelResponse,
    DisputeAnswer,
    DisputeAnswerResult,
    DisputeFeed,
    DisputeNotice,
    Inquiry,
    JournalPage,
    Outcome,
    PayoutRequest,
    PayoutResult,
    PayoutState,
    ReferenceRequest,
    RefundRequest,
    RemoteState,
    StatementFile,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpResult:
    status: int  # 0: no HTTP answer
    body: dict[str, Any]
    sent: bool  # False when the request provably never reached the channel
    latency_ms: int

    @property
    def error_code(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("code", "")) if isinstance(error, dict) else ""


class HttpConnector:
    """Base for connectors over HTTP+JSON. Subclasses set `name` and implement the operations with `call`."""

    name = "http"
    safe_retries = 2

    def __init__(self, *, base_url: str, connect_timeout: float = 2.0, read_timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(timeout=httpx.Timeout(read_timeout, connect=connect_timeout))

    def sign(self, method: str, target: str, body: bytes) -> dict[str, str]:
        return {}

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, Any] | None = None,
        safe: bool = False,
    ) -> HttpResult:
        """One request; `safe` (reads, and writes idempotent by reference) may be retried on transport failures."""
        target = path + ("?" + urlencode({k: v for k, v in (query or {}).items() if v is not None}) if query else "")
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        attempts = 1 + (self.safe_retries if safe else 0)
        result = HttpResult(0, {}, False, 0)
        for attempt in range(attempts):
            started = time.monotonic()
            headers = {"Content-Type": "application/json", **self.sign(method, target, raw)}
            try:
                response = self.client.request(method, self.base_url + target, content=raw, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                result = HttpResult(0, {}, False, int((time.monotonic() - started) * 1000))
            except httpx.TransportError as exc:  # read timeout, reset: the request may have been processed
                logger.warning("%s %s: no answer (%s)", method, path, type(exc).__name__)
                result = HttpResult(0, {}, True, int((time.monotonic() - started) * 1000))
            else:
                try:
                    payload = response.json()
                except ValueError:
                    payload = {}
                result = HttpResult(
                    response.status_code,
                    payload if isinstance(payload, dict) else {},
                    True,
                    int((time.monotonic() - started) * 1000),
                )
                if response.status_code < 500:
                    return result
            if attempt + 1 < attempts:
                time.sleep(0.05 * (2**attempt))
        return result


_PAYMENT_STATES = {
    "authorised": RemoteState.AUTHORIZED,
    "captured": RemoteState.CAPTURED,
    "partially_refunded": RemoteState.CAPTURED,
    "refunded": RemoteState.CAPTURED,
    "voided": RemoteState.VOIDED,
    "reversed": RemoteState.REVERSED,
    "declined": RemoteState.DECLINED,
    "not_found": RemoteState.NOT_FOUND,
}


class SimulatorConnector(HttpConnector):
    """The channel simulator: acquirers, bank debit, wallets, prepaid and digital RMB over one signed HTTP API."""

    name = "simulator"

    def __init__(self) -> None:
        config = settings.SIMULATOR
        super().__init__(
            base_url=config["URL"], connect_timeout=config["CONNECT_TIMEOUT"], read_timeout=config["READ_TIMEOUT"]
        )
        self.key_id, self.secret = config["KEY_ID"], config["SECRET"]

    def healthy(self) -> bool:
        return self.call("GET", "/healthz", safe=True).status == 200

    def set_faults(self, remote_id: str, **faults: Any) -> dict[str, Any]:
        """Sandbox only: change a simulated channel's fault profile (the demo seeds without latency)."""
        result = self.call("PATCH", f"/admin/channels/{quote(remote_id, safe='')}/faults", faults)
        if result.status != 200:
            raise ConnectionError(f"could not set faults on {remote_id}: {result.status} {result.error_code}")
        return result.body

    def open_account(self, remote_id: str, account_id: str, holder: str, balance: int) -> dict[str, Any]:
        """Sandbox only: open a balance account (demo data); repeating it is a replay, the balance is not reset."""
        body = {"channel": remote_id, "account_id": account_id, "holder": holder, "currency": "CNY", "balance": balance}
        result = self.call("POST", "/sandbox/accounts", body)
        if result.status != 200:
            raise ConnectionError(f"could not open account {account_id}: {result.status} {result.error_code}")
        return result.body

    def sign(self, method: str, target: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        message = f"{timestamp}.{method.upper()}.{target}.".encode() + body
        signature = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return {"X-Sim-Key-Id": self.key_id, "X-Sim-Timestamp": timestamp, "X-Sim-Signature": signature}

    @staticmethod
    def _instrument(request: AuthorizeRequest) -> dict[str, str]:
        kind = request.instrument or ("account" if request.method == "balance" else "card")
        field = {"card": "token", "code": "code", "account": "account_id"}[kind]
        return {"kind": kind, field: request.source_token}

    def _write(self, result: HttpResult, *, not_found_ok: bool = False) -> ChannelResponse:
        if not result.sent:
            return ChannelResponse(Outcome.FAILED, code="channel_unreachable", latency_ms=result.latency_ms)
        if result.status == 0 or result.status == 504:
            return ChannelResponse(Outcome.UNKNOWN, code="timeout", latency_ms=result.latency_ms)
        if result.status >= 500:
            return ChannelResponse(
                Outcome.FAILED, code=result.error_code or "channel_error", latency_ms=result.latency_ms
            )
        if result.status == 404 and not_found_ok:
            return ChannelResponse(Outcome.APPROVED, RemoteState.NOT_FOUND, latency_ms=result.latency_ms)
        if result.status == 422:  # the account or card said no (insufficient funds, hold refused)
            return ChannelResponse(Outcome.DECLINED, code=result.error_code or "refused", latency_ms=result.latency_ms)
        if result.status >= 400:  # the channel refused the request itself: nothing was processed
            return ChannelResponse(Outcome.FAILED, code=result.error_code or "refused", latency_ms=result.latency_ms)
        state = _PAYMENT_STATES.get(str(result.body.get("state", "")))
        if state == RemoteState.DECLINED:
            return ChannelResponse(
                Outcome.DECLINED,
                state,
                code=str(result.body.get("decline_code") or "declined"),
                latency_ms=result.latency_ms,
            )
        return ChannelResponse(
            Outcome.APPROVED, state, channel_reference=str(result.body.get("id") or ""), latency_ms=result.latency_ms
        )

    def authorize(self, request: AuthorizeRequest) -> ChannelResponse:
        body = {
            "channel": request.channel,
            "reference": request.reference,
            "amount": request.amount,
            "currency": request.currency,
            "instrument": self._instrument(request),
            "capture": request.capture,
        }
        return self._write(self.call("POST", "/v1/payments/authorise", body))

    def capture(self, request: CaptureRequest) -> ChannelResponse:
        body = {"channel": request.channel, "reference": request.reference, "amount": request.amount}
        return self._write(self.call("POST", "/v1/payments/capture", body))

    def void(self, request: ReferenceRequest) -> ChannelResponse:
        return self._write(
            self.call("POST", "/v1/payments/void", {"channel": request.channel, "reference": request.reference})
        )

    def reverse(self, request: ReferenceRequest) -> ChannelResponse:
        # 冲正 is idempotent by reference at the channel, so it is safe to repeat after a transport failure.
        result = self.call(
            "POST", "/v1/payments/reverse", {"channel": request.channel, "reference": request.reference}, safe=True
        )
        return self._write(result, not_found_ok=True)

    def refund(self, request: RefundRequest) -> ChannelResponse:
        body = {
            "channel": request.channel,
            "reference": request.reference,
            "refund_reference": request.refund_reference,
            "amount": request.amount,
        }
        response = self._write(self.call("POST", "/v1/payments/refund", body))
        if response.outcome == Outcome.APPROVED:
            return ChannelResponse(Outcome.APPROVED, RemoteState.REFUNDED, latency_ms=response.latency_ms)
        return response

    def _status(self, channel: str, reference: str) -> HttpResult:
        return self.call("GET", f"/v1/payments/{quote(channel, safe='')}/{quote(reference, safe='')}", safe=True)

    def inquire(self, request: ReferenceRequest) -> Inquiry:
        result = self._status(request.channel, request.reference)
        if result.status == 404:
            return Inquiry(Outcome.APPROVED, RemoteState.NOT_FOUND, latency_ms=result.latency_ms)
        if result.status != 200:
            return Inquiry(Outcome.UNKNOWN, latency_ms=result.latency_ms)
        body = result.body
        return Inquiry(
            Outcome.APPROVED,
            _PAYMENT_STATES.get(str(body.get("state")), RemoteState.NOT_FOUND),
            amount_authorized=int(body.get("amount") or 0),
            amount_captured=int(body.get("captured_amount") or 0),
            amount_refunded=int(body.get("refunded_amount") or 0),
            channel_reference=str(body.get("id") or ""),
            latency_ms=result.latency_ms,
        )

    def account_inquire(self, account_id: str) -> AccountBalance:
        result = self.call("GET", f"/v1/accounts/{quote(account_id, safe='')}", safe=True)
        if result.status == 404:
            return AccountBalance(Outcome.DECLINED)
        if result.status != 200:
            return AccountBalance(Outcome.UNKNOWN)
        body = result.body
        return AccountBalance(
            Outcome.APPROVED,
            currency=str(body.get("currency") or ""),
            balance=int(body.get("balance") or 0),
            held=int(body.get("held") or 0),
            available=int(body.get("available") or 0),
        )

    def refund_inquire(self, request: RefundRequest) -> Inquiry:
        result = self._status(request.channel, request.reference)
        if result.status == 404:
            return Inquiry(Outcome.APPROVED, RemoteState.NOT_FOUND, latency_ms=result.latency_ms)
        if result.status != 200:
            return Inquiry(Outcome.UNKNOWN, latency_ms=result.latency_ms)
        for refund in result.body.get("refunds") or []:
            if refund.get("refund_reference") == request.refund_reference:
                return Inquiry(Outcome.APPROVED, RemoteState.REFUNDED, amount_refunded=int(refund.get("amount") or 0))
        return Inquiry(Outcome.APPROVED, RemoteState.NOT_FOUND, latency_ms=result.latency_ms)

    def charges_after(self, channel: str, position: int, *, limit: int = 1000) -> JournalPage:
        """The charges the channel's journal records after `position` (its sequence numbers): sales and
        authorisations it made, including those whose answer timed out. Reads at most `limit` journal rows, a page
        of at most 1,000 at a time."""
        references: list[str] = []
        read = 0
        while read < limit:
            page = min(1_000, limit - read)
            query = {"channel": channel, "after": position, "limit": page}
            result = self.call("GET", "/journal", query=query, safe=True)
            if result.status != 200:
                raise ConnectionError(f"journal of {channel} unavailable ({result.status})")
            rows = result.body.get("data", [])
            references += [
                row["reference"]
                for row in rows
                if row.get("op") in ("sale", "authorise")
                and row.get("outcome") in ("ok", "charged_timeout")
                and row.get("reference")
            ]
            read += len(rows)
            position = int(result.body.get("next_after") or position)
            if not result.body.get("has_more"):
                break
        return JournalPage(list(dict.fromkeys(references)), position)

    def statement(self, channel: str, day: date) -> StatementFile:
        """The channel's statement file for `day` (its own business date), as text with its layout: the layout is
        the `X-Statement-Format` header when the channel sends one. A 404 `statement_not_ready` is a late file."""
        target = f"/v1/statements/{quote(channel, safe='')}/{day.isoformat()}"
        try:
            response = self.client.request("GET", self.base_url + target, headers=self.sign("GET", target, b""))
        except httpx.TransportError as exc:
            logger.warning("statement %s %s: no answer (%s)", channel, day, type(exc).__name__)
            return StatementFile(Outcome.UNKNOWN, code="no_answer")
        if response.status_code == 200:
            response.encoding = "utf-8"
            return StatementFile(
                Outcome.APPROVED, text=response.text, format=response.headers.get("X-Statement-Format", "")
            )
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        if response.status_code == 404 and code == "statement_not_ready":
            return StatementFile(Outcome.DECLINED, code=code)
        return StatementFile(Outcome.UNKNOWN, code=code or f"http_{response.status_code}")

    def payout(self, request: PayoutRequest) -> PayoutResult:
        """Sent once per call: a payout left without an answer is resolved by `payout_inquire`, then sent again under
        the same reference if the channel never accepted it."""
        account = {"last4": request.account_last4, "name": request.account_name, "token": request.account_token}
        body = {
            "channel": request.channel,
            "reference": request.reference,
            "amount": request.amount,
            "currency": request.currency,
            "account": {name: value for name, value in account.items() if value},
        }
        result = self.call("POST", "/v1/payouts", body)
        if not result.sent:
            return PayoutResult(Outcome.FAILED, code="channel_unreachable", latency_ms=result.latency_ms)
        if result.status in (0, 504, 409):  # no answer; or the reference holds a payout we cannot see from here
            return PayoutResult(Outcome.UNKNOWN, code=result.error_code or "timeout", latency_ms=result.latency_ms)
        if result.status >= 500:
            return PayoutResult(Outcome.FAILED, code=result.error_code or "channel_error", latency_ms=result.latency_ms)
        if result.status >= 400:
            return PayoutResult(Outcome.DECLINED, code=result.error_code or "refused", latency_ms=result.latency_ms)
        return self._payout_answer(result)

    def payout_inquire(self, reference: str) -> PayoutResult:
        result = self.call("GET", f"/v1/payouts/{quote(reference, safe='')}", safe=True)
        if result.status != 200:
            return PayoutResult(
                Outcome.UNKNOWN, code=result.error_code or "inquiry_failed", latency_ms=result.latency_ms
            )
        return self._payout_answer(result)

    @staticmethod
    def _payout_answer(result: HttpResult) -> PayoutResult:
        try:
            state = PayoutState(str(result.body.get("state")))
        except ValueError:
            return PayoutResult(Outcome.UNKNOWN, code="bad_response", latency_ms=result.latency_ms)
        return PayoutResult(
            Outcome.APPROVED,
            state,
            channel_reference=str(result.body.get("id") or ""),
            return_reason=str(result.body.get("return_reason") or ""),
            latency_ms=result.latency_ms,
        )

    def dispute_notices(self, channel: str, position: int, *, limit: int = 500) -> DisputeFeed:
        """The channel's dispute notices after `position` (the feed's sequence numbers), oldest first. Raises
        ConnectionError when the feed does not answer: the caller keeps its position and asks again."""
        query = {"channel": channel, "after": position, "limit": limit}
        result = self.call("GET", "/v1/disputes", query=query, safe=True)
        if result.status != 200:
            raise ConnectionError(f"dispute feed of {channel} unavailable ({result.status} {result.error_code})")
        notices = []
        for item in result.body.get("data") or []:
            dispute = item.get("dispute") or {}
            notices.append(
                DisputeNotice(
                    position=int(item["seq"]),
                    type=str(item.get("type") or ""),
                    dispute_reference=str(dispute.get("id") or ""),
                    payment_reference=str(dispute.get("reference") or ""),
                    kind=str(dispute.get("kind") or ""),
                    amount=int(dispute.get("amount") or 0),
                    currency=str(dispute.get("currency") or ""),
                    reason_code=str(dispute.get("reason_code") or ""),
                    outcome=str(dispute.get("outcome") or ""),
                    at=datetime.fromisoformat(str(item["at"]).replace("Z", "+00:00")) if item.get("at") else None,
                )
            )
        next_position = int(result.body.get("next_after") or position)
        return DisputeFeed(notices, next_position, has_more=bool(result.body.get("has_more")))

    def dispute_respond(self, answer: DisputeAnswer) -> DisputeAnswerResult:
        """Sends the answer under our reference. Idempotent at the channel, so a transport failure is retried here
        and, still unanswered, left UNKNOWN for the next run to send again."""
        body = {
            "reference": answer.reference,
            "text": answer.text,
            "files": [
                {"name": f.name, "content_type": f.content_type, "size": f.size, "sha256": f.sha256}
                for f in answer.files
            ],
        }
        target = f"/v1/disputes/{quote(answer.dispute_reference, safe='')}/responses"
        result = self.call("POST", target, body, safe=True)
        if not result.sent:
            return DisputeAnswerResult(Outcome.FAILED, code="channel_unreachable")
        if result.status in (0, 504):
            return DisputeAnswerResult(Outcome.UNKNOWN, code=result.error_code or "timeout")
        if result.status == 200:
            return DisputeAnswerResult(Outcome.APPROVED)
        if result.status >= 500:
            return DisputeAnswerResult(Outcome.FAILED, code=result.error_code or "channel_error")
        return DisputeAnswerResult(Outcome.DECLINED, code=result.error_code or f"http_{result.status}")
