"""A small typed client for the channel simulator (httpx; no Django), for tests, demos and the payments connectors.

    with SimulatorClient("http://127.0.0.1:8100") as sim:
        payment = sim.authorise(channel="acq-unionpay-a", reference="pi_1", amount=1000, currency="CNY",
                                instrument={"kind": "card", "token": "tok_1"})

Refusals raise `SimulatorError` (with the HTTP status and the error code); a simulated or real timeout raises
`SimulatorTimeout` — the outcome is then unknown and must be resolved with `payment_status` (or `reverse`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx

from . import signing

T = TypeVar("T")


class SimulatorError(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.type: str = error.get("type", "")
        self.code: str = error.get("code", "")
        self.message: str = error.get("message", "")
        self.param: str | None = error.get("param")
        self.error = error


class SimulatorTimeout(SimulatorError):
    """No answer in time (the client's timeout, or the channel's 504): the call may or may not have taken effect."""


def _build(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Payment:
    id: str | None
    channel: str
    reference: str
    state: str  # authorised captured partially_refunded refunded voided reversed declined | not_found
    amount: int = 0
    currency: str = ""
    captured_amount: int = 0
    refunded_amount: int = 0
    reversed_amount: int = 0
    decline_code: str | None = None
    auth_code: str | None = None
    instrument: dict[str, str] | None = None
    hold_id: str | None = None
    business_date: str | None = None
    created_at: str | None = None
    captured_at: str | None = None
    captured_business_date: str | None = None
    updated_at: str | None = None
    refunds: list[dict[str, Any]] | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Refund:
    id: str
    payment_id: str
    channel: str
    reference: str
    refund_reference: str
    amount: int
    currency: str
    state: str
    business_date: str
    created_at: str
    payment_state: str
    payment_refunded_amount: int
    replayed: bool = False


@dataclass(frozen=True)
class Account:
    id: str
    channel: str
    holder: str
    currency: str
    balance: int
    held: int
    available: int
    created_at: str
    replayed: bool = False


@dataclass(frozen=True)
class Hold:
    id: str | None
    account_id: str
    reference: str
    state: str  # held captured released | not_found
    amount: int = 0
    currency: str = ""
    captured_amount: int = 0
    released_amount: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Payout:
    id: str | None
    reference: str
    state: str  # accepted paid returned | not_found
    channel: str = ""
    amount: int = 0
    currency: str = ""
    account: dict[str, str] | None = None
    return_reason: str | None = None
    business_date: str | None = None
    created_at: str | None = None
    due_at: str | None = None
    finished_at: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class OtpChallenge:
    reference: str
    channel: str
    phone_hint: str
    state: str  # pending verified locked expired
    attempts_left: int
    expires_at: str
    verified_at: str | None = None
    code: str | None = None  # only from the sandbox peek
    attempts: int | None = None
    replayed: bool = False


@dataclass(frozen=True)
class JournalPage:
    data: list[dict[str, Any]]
    has_more: bool
    next_after: int


@dataclass(frozen=True)
class StatementFile:
    text: str
    format: str  # csv_v1 csv_v2 fixed_v1
    content_type: str


class SimulatorClient:
    def __init__(
        self,
        base_url: str,
        *,
        key_id: str = signing.DEFAULT_KEY_ID,
        secret: str = signing.DEFAULT_SECRET,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.secret = secret
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ----------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one signed request; the signature covers the target exactly as sent (path and query)."""
        clean = {k: v for k, v in (query or {}).items() if v is not None}
        target = path + ("?" + urlencode(clean) if clean else "")
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = signing.signed_headers(self.key_id, self.secret, method, target, raw)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method,
                self.base_url + target,
                content=raw,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            raise SimulatorTimeout(0, {"type": "timeout", "code": "client_timeout", "message": str(exc)}) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"type": "channel_error", "code": "bad_response", "message": response.text[:200]}
            if response.status_code == 504:
                raise SimulatorTimeout(504, error)
            raise SimulatorError(response.status_code, error)
        return response

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.request(method, path, body, **kw).json()
        return data

    # ---- payments -----------------------------------------------------------------------------------------------

    def authorise(
        self,
        *,
        channel: str,
        reference: str,
        amount: int,
        currency: str,
        instrument: dict[str, str],
        capture: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Payment:
        body = {
            "channel": channel,
            "reference": reference,
            "amount": amount,
            "currency": currency,
            "instrument": instrument,
            "capture": capture,
        }
        if request_id:
            body["request_id"] = request_id
        return _build(Payment, self._json("POST", "/v1/payments/authorise", body, timeout=timeout))

    def capture(
        self, *, channel: str, reference: str, amount: int | None = None, request_id: str | None = None
    ) -> Payment:
        body = _compact(channel=channel, reference=reference, amount=amount, request_id=request_id)
        return _build(Payment, self._json("POST", "/v1/payments/capture", body))

    def void(self, *, channel: str, reference: str, request_id: str | None = None) -> Payment:
        body = _compact(channel=channel, reference=reference, request_id=request_id)
        return _build(Payment, self._json("POST", "/v1/payments/void", body))

    def refund(
        self, *, channel: str, reference: str, refund_reference: str, amount: int, request_id: str | None = None
    ) -> Refund:
        body = _compact(
            channel=channel,
            reference=reference,
            refund_reference=refund_reference,
            amount=amount,
            request_id=request_id,
        )
        return _build(Refund, self._json("POST", "/v1/payments/refund", body))

    def reverse(self, *, channel: str, reference: str, request_id: str | None = None) -> Payment:
        body = _compact(channel=channel, reference=reference, request_id=request_id)
        return _build(Payment, self._json("POST", "/v1/payments/reverse", body))

    def payment_status(self, *, channel: str, reference: str) -> Payment:
        path = f"/v1/payments/{quote(channel, safe='')}/{quote(reference, safe='')}"
        data = self._json("GET", path)
        data.setdefault("id", None)
        return _build(Payment, data)

    # ---- balances -----------------------------------------------------------------------------------------------

    def open_account(
        self, *, channel: str, currency: str, balance: int, account_id: str | None = None, holder: str = ""
    ) -> Account:
        body = _compact(channel=channel, currency=currency, balance=balance, account_id=account_id, holder=holder)
        return _build(Account, self._json("POST", "/sandbox/accounts", body))

    def account(self, account_id: str) -> Account:
        return _build(Account, self._json("GET", f"/v1/accounts/{quote(account_id, safe='')}"))

    def hold(
        self,
        *,
        account_id: str,
        reference: str,
        amount: int,
        currency: str | None = None,
        request_id: str | None = None,
    ) -> Hold:
        body = _compact(reference=reference, amount=amount, currency=currency, request_id=request_id)
        return _build(Hold, self._json("POST", f"/v1/accounts/{quote(account_id, safe='')}/holds", body))

    def hold_status(self, *, account_id: str, reference: str) -> Hold:
        data = self._json("GET", f"/v1/accounts/{quote(account_id, safe='')}/holds/{quote(reference, safe='')}")
        data.setdefault("id", None)
        return _build(Hold, data)

    def capture_hold(self, hold_id: str, *, amount: int | None = None, request_id: str | None = None) -> Hold:
        body = _compact(amount=amount, request_id=request_id)
        return _build(Hold, self._json("POST", f"/v1/holds/{quote(hold_id, safe='')}/capture", body))

    def release_hold(self, hold_id: str, *, request_id: str | None = None) -> Hold:
        body = _compact(request_id=request_id)
        return _build(Hold, self._json("POST", f"/v1/holds/{quote(hold_id, safe='')}/release", body))

    # ---- payouts ------------------------------------------------------------------------------------------------

    def payout(
        self,
        *,
        channel: str,
        reference: str,
        amount: int,
        currency: str,
        account: dict[str, str],
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Payout:
        body = _compact(
            channel=channel,
            reference=reference,
            amount=amount,
            currency=currency,
            account=account,
            request_id=request_id,
        )
        return _build(Payout, self._json("POST", "/v1/payouts", body, timeout=timeout))

    def payout_status(self, reference: str) -> Payout:
        data = self._json("GET", f"/v1/payouts/{quote(reference, safe='')}")
        data.setdefault("id", None)
        return _build(Payout, data)

    # ---- verification codes -------------------------------------------------------------------------------------

    def otp_start(self, *, channel: str, reference: str, phone_hint: str) -> OtpChallenge:
        body = {"channel": channel, "reference": reference, "phone_hint": phone_hint}
        return _build(OtpChallenge, self._json("POST", "/v1/otp/start", body))

    def otp_verify(self, *, channel: str, reference: str, code: str) -> OtpChallenge:
        body = {"channel": channel, "reference": reference, "code": code}
        return _build(OtpChallenge, self._json("POST", "/v1/otp/verify", body))

    def otp_peek(self, reference: str) -> OtpChallenge:
        return _build(OtpChallenge, self._json("GET", f"/sandbox/otp/{quote(reference, safe='')}"))

    # ---- statements, journal, admin, sandbox -------------------------------------------------------------------

    def statement_file(self, *, channel: str, date: str, format: str | None = None) -> StatementFile:
        """The channel's statement for a business date: its text and its layout (the `X-Statement-Format` header).
        `format` asks for another layout. A late file raises `SimulatorError` 404 `statement_not_ready`."""
        response = self.request("GET", f"/v1/statements/{quote(channel, safe='')}/{date}", query={"format": format})
        return StatementFile(
            text=response.text,
            format=response.headers.get("X-Statement-Format", "csv_v1"),
            content_type=response.headers.get("Content-Type", ""),
        )

    def statement(self, *, channel: str, date: str, format: str | None = None) -> str:
        """The statement's text (see `statement_file`)."""
        return self.statement_file(channel=channel, date=date, format=format).text

    def set_statement_faults(self, *, channel: str, date: str, **faults: Any) -> dict[str, Any]:
        """Replace the discrepancies injected into (channel, date)'s statement: `missing`, `extra`, `amount`,
        `status`, `duplicate`, `late_until`, `rate`, `seed` (see docs/simulator.md); none at all clears them."""
        return self._json("POST", "/v1/admin/statement-faults", {"channel": channel, "date": date, **faults})

    def statement_faults(self, *, channel: str | None = None, date: str | None = None) -> list[dict[str, Any]]:
        """The stored discrepancies, each with `applied`: which references met which (against the journal now)."""
        data: list[dict[str, Any]] = self._json(
            "GET", "/v1/admin/statement-faults", query={"channel": channel, "date": date}
        )["data"]
        return data

    def journal(
        self,
        *,
        channel: str | None = None,
        date: str | None = None,
        op: str | None = None,
        reference: str | None = None,
        outcome: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> JournalPage:
        query = {
            "channel": channel,
            "date": date,
            "op": op,
            "reference": reference,
            "outcome": outcome,
            "after": after,
            "limit": limit,
        }
        return _build(JournalPage, self._json("GET", "/journal", query=query))

    def journal_all(self, **filters: Any) -> list[dict[str, Any]]:
        """Every journal row matching the filters, following the pages."""
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.journal(after=after, limit=1000, **filters)
            rows.extend(page.data)
            if not page.has_more:
                return rows
            after = page.next_after

    # ---- disputes -----------------------------------------------------------------------------------------------

    def open_dispute(
        self,
        *,
        channel: str,
        reference: str,
        kind: str,
        amount: int | None = None,
        reason_code: str | None = None,
        outcome: str | None = None,
    ) -> dict[str, Any]:
        """Admin: the channel disputes a captured payment; `outcome` (won or lost) is what it will decide."""
        body = _compact(
            channel=channel, reference=reference, kind=kind, amount=amount, reason_code=reason_code, outcome=outcome
        )
        return self._json("POST", "/v1/admin/disputes", body)

    def decide_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        """Admin: decide a dispute now, won or lost."""
        return self._json("POST", f"/v1/admin/disputes/{quote(dispute_id, safe='')}/decision", {"outcome": outcome})

    def respond_dispute(
        self, dispute_id: str, *, reference: str, text: str = "", files: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        body = {"reference": reference, "text": text, "files": files or []}
        return self._json("POST", f"/v1/disputes/{quote(dispute_id, safe='')}/responses", body)

    def dispute(self, dispute_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/disputes/{quote(dispute_id, safe='')}")

    def dispute_notices(self, *, channel: str | None = None, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """The feed: `data` (notices with `seq`, `type`, `at`, `dispute`), `has_more`, `next_after`."""
        return self._json("GET", "/v1/disputes", query={"channel": channel, "after": after, "limit": limit})

    def channels(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", "/admin/channels")["data"]
        return data

    def put_channel(self, channel_id: str, channel: dict[str, Any]) -> dict[str, Any]:
        return self._json("PUT", f"/admin/channels/{quote(channel_id, safe='')}", channel)

    def set_faults(self, channel_id: str, **faults: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/admin/channels/{quote(channel_id, safe='')}/faults", faults)

    def reset(self) -> None:
        self._json("POST", "/sandbox/reset", {})

    def set_clock(self, now: str | None) -> dict[str, Any]:
        return self._json("POST", "/sandbox/clock", {"now": now})

    def healthy(self) -> bool:
        try:
            return self._http.get(self.base_url + "/healthz").status_code == 200
        except httpx.HTTPError:
            return False


def _compact(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
