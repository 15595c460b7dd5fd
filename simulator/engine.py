"""The channels' behaviour: payments, balance accounts and holds, one-time codes, faults, the journal.

Every public operation returns an `Outcome` (HTTP status, JSON body, and how long to keep the caller waiting) and has
written exactly one journal row by the time it returns — refusals and injected faults included.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .config import BALANCE_KINDS, Channel, ConfigError, channel_from_json, load_channels
from .store import Store

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MAX_AMOUNT = 10**13
DISPUTE_KINDS = ("retrieval", "chargeback", "error_adjustment")
DISPUTE_OUTCOMES = ("won", "lost")
REASON_CODE = re.compile(r"^[A-Za-z0-9._-]{0,16}$")

# Deterministic triggers: the last two digits of the amount in minor units, and reference prefixes.
AMOUNT_TRIGGERS = {
    51: "decline",
    52: "insufficient_funds",
    53: "error",
    54: "timeout",
    55: "charged_timeout",
    56: "fraud",
}
REFERENCE_TRIGGERS = {
    "fault-decline-": "decline",
    "fault-nsf-": "insufficient_funds",
    "fault-error-": "error",
    "fault-timeout-": "timeout",
    "fault-charged-timeout-": "charged_timeout",
    "fault-fraud-": "fraud",
}
# What a caller would see of a simulated timeout if it waited long enough. It never says whether the call took effect:
# only a status inquiry does.
TIMEOUT_BODY = {
    "error": {
        "type": "timeout",
        "code": "timeout",
        "message": "the channel did not answer in time; ask for the status",
        "param": None,
    }
}
DECLINE_CODES = {"decline": "do_not_honour", "insufficient_funds": "insufficient_funds", "fraud": "suspected_fraud"}
# Payouts: reference prefixes as for the charging calls, plus returns; and the beneficiary account's last four digits.
# The amount triggers nothing: a payout's amount is a settlement's net, which may end in any two digits.
PAYOUT_REFERENCE_TRIGGERS = {
    "fault-error-": "error",
    "fault-timeout-": "timeout",
    "fault-charged-timeout-": "accepted_timeout",
    "fault-return-closed-": "return:account_closed",
    "fault-return-name-": "return:name_mismatch",
    "fault-return-frozen-": "return:account_frozen",
}
PAYOUT_ACCOUNT_TRIGGERS = {
    "9951": "return:account_closed",
    "9952": "return:name_mismatch",
    "9953": "return:account_frozen",
}


class SimError(Exception):
    """A refusal: answered as `{"error": {"type", "code", "message", "param"}}` with `status`."""

    TYPES = {400: "invalid_request", 401: "authentication", 404: "not_found", 405: "invalid_request"}

    def __init__(
        self, status: int, code: str, message: str, param: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.extra = extra or {}

    @property
    def type(self) -> str:
        if self.status in self.TYPES:
            return self.TYPES[self.status]
        if self.status == 409:
            return "conflict"
        if self.status == 422:
            return "refused"
        if self.status == 503:
            return "channel_down"
        if self.status == 504:
            return "timeout"
        return "channel_error"

    def body(self) -> dict[str, Any]:
        return {
            "error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param, **self.extra}
        }


@dataclass
class Entry:
    """What one operation writes to the journal."""

    op: str
    channel: str
    reference: str | None = None
    op_reference: str | None = None
    object_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    money: int = 0
    fee: int = 0
    outcome: str = "ok"
    code: str | None = None
    business_date: str | None = None


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    hang_ms: int = 0
    text: str | None = None  # a non-JSON answer (a statement)
    content_type: str | None = None  # of `text`; default CSV
    headers: dict[str, str] | None = None


@dataclass
class Call:
    """Who is calling and with which ids (from the signed headers and the body)."""

    key_id: str | None = None
    request_id: str | None = None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def fee_for(amount: int, fee_bps: int) -> int:
    """The channel's fee on a capture, rounded half up to the minor unit."""
    return (amount * fee_bps + 5000) // 10000


class Simulator:
    def __init__(self, store: Store, config_path: Path, otp_ttl_seconds: int = 300, otp_max_attempts: int = 5) -> None:
        self.store = store
        self.config_path = config_path
        self.otp_ttl_seconds = otp_ttl_seconds
        self.otp_max_attempts = otp_max_attempts
        self._lock = threading.Lock()  # channels, RNGs and the clock offset
        self._clock_offset = timedelta(0)
        self.channels: dict[str, Channel] = {}
        self._rngs: dict[str, random.Random] = {}
        self._load_config()

    # ---- configuration, clock, reset -------------------------------------------------------------------------

    def _load_config(self) -> None:
        channels = load_channels(self.config_path)
        with self._lock:
            self.channels = channels
            self._rngs = {cid: random.Random(ch.faults.seed) for cid, ch in channels.items()}  # noqa: S311
            self._clock_offset = timedelta(0)

    def reset(self) -> Outcome:
        """Forget everything (payments, accounts, holds, codes, journal) and reload the channel file."""
        self._load_config()
        self.store.wipe()
        return Outcome(200, {"status": "reset", "channels": sorted(self.channels)})

    def now(self) -> datetime:
        with self._lock:
            offset = self._clock_offset
        return datetime.now(UTC) + offset

    def set_clock(self, body: dict[str, Any]) -> Outcome:
        value = body.get("now")
        if value is None:
            offset = timedelta(0)
        else:
            if not isinstance(value, str):
                raise SimError(400, "invalid_clock", "now must be an ISO 8601 datetime with an offset, or null", "now")
            try:
                target = _parse_iso(value)
            except ValueError as exc:
                raise SimError(400, "invalid_clock", "now must be an ISO 8601 datetime with an offset", "now") from exc
            if target.tzinfo is None:
                raise SimError(400, "invalid_clock", "now needs a UTC offset", "now")
            offset = target - datetime.now(UTC)
        with self._lock:
            self._clock_offset = offset
        return self.clock()

    def clock(self) -> Outcome:
        now = self.now()
        with self._lock:
            offset = self._clock_offset
        return Outcome(200, {"now": _iso(now), "offset_seconds": round(offset.total_seconds(), 3)})

    def channel(self, channel_id: Any) -> Channel:
        if not isinstance(channel_id, str):
            raise SimError(400, "parameter_missing", "channel is required", "channel")
        with self._lock:
            found = self.channels.get(channel_id)
        if found is None:
            raise SimError(404, "unknown_channel", f"no channel {channel_id!r}", "channel")
        return found

    def list_channels(self) -> Outcome:
        with self._lock:
            data = [ch.as_json() for _, ch in sorted(self.channels.items())]
        return Outcome(200, {"data": data})

    def get_channel(self, channel_id: str) -> Outcome:
        return Outcome(200, self.channel(channel_id).as_json())

    def put_channel(self, channel_id: str, body: dict[str, Any]) -> Outcome:
        try:
            channel = channel_from_json(channel_id, body)
        except ConfigError as exc:
            raise SimError(400, "invalid_channel", str(exc), exc.param) from exc
        with self._lock:
            self.channels[channel_id] = channel
            self._rngs[channel_id] = random.Random(channel.faults.seed)  # noqa: S311
        return Outcome(200, channel.as_json())

    def patch_faults(self, channel_id: str, body: dict[str, Any]) -> Outcome:
        current = self.channel(channel_id)
        try:
            faults = current.faults.merged(body)
        except ConfigError as exc:
            raise SimError(400, "invalid_faults", str(exc), exc.param) from exc
        with self._lock:
            channel = Channel(**{**current.__dict__, "faults": faults})
            self.channels[channel_id] = channel
            if "seed" in body:
                self._rngs[channel_id] = random.Random(faults.seed)  # noqa: S311
        return Outcome(200, channel.as_json())

    # ---- time and business dates -------------------------------------------------------------------------------

    def business_date(self, channel: Channel, moment: datetime) -> date:
        """The channel's own date: at or after its daily cut-off (Asia/Shanghai) a call belongs to the next day."""
        local = moment.astimezone(LOCAL_TZ)
        hour, minute = (int(part) for part in channel.cutoff.split(":"))
        day = local.date()
        if (local.hour, local.minute) >= (hour, minute):
            day += timedelta(days=1)
        return day

    # ---- journal ------------------------------------------------------------------------------------------------

    def _journal(self, conn: sqlite3.Connection, entry: Entry, call: Call, status: int, at: datetime) -> None:
        conn.execute(
            "INSERT INTO journal (at, business_date, channel, op, reference, op_reference, request_id, key_id,"
            " object_id, amount, currency, money, fee, outcome, http_status, code)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _iso(at),
                entry.business_date,
                entry.channel,
                entry.op,
                entry.reference,
                entry.op_reference,
                call.request_id,
                call.key_id,
                entry.object_id,
                entry.amount,
                entry.currency,
                entry.money,
                entry.fee,
                entry.outcome,
                status,
                entry.code,
            ),
        )

    def _run(
        self,
        call: Call,
        entry: Entry,
        channel: Channel,
        work: Callable[[sqlite3.Connection, datetime, Entry], Outcome],
        faults: bool = True,
    ) -> Outcome:
        """Run one operation in one write transaction with its journal row; a refusal rolls the work back and is
        journaled on its own. Latency and the channel's down state apply first, outside any transaction."""
        if faults:
            self._latency(channel)
            if channel.faults.down:
                entry.outcome, entry.code = "down", "channel_down"
                error = SimError(503, "channel_down", f"channel {channel.id} is down")
                self._journal_alone(call, entry, channel, 503)
                raise error
        try:
            with self.store.write() as conn:
                at = self.now()
                if entry.business_date is None:
                    entry.business_date = self.business_date(channel, at).isoformat()
                outcome = work(conn, at, entry)
                self._journal(conn, entry, call, outcome.status, at)
        except SimError as error:
            entry.outcome = "refused" if error.status < 500 else "error"
            entry.code, entry.money, entry.fee = error.code, 0, 0
            self._journal_alone(call, entry, channel, error.status)
            raise
        return outcome

    def _journal_alone(self, call: Call, entry: Entry, channel: Channel, status: int) -> None:
        with self.store.write() as conn:
            at = self.now()
            if entry.business_date is None:
                entry.business_date = self.business_date(channel, at).isoformat()
            self._journal(conn, entry, call, status, at)

    def _latency(self, channel: Channel) -> None:
        faults = channel.faults
        if not faults.latency_ms and not faults.latency_jitter_ms:
            return
        with self._lock:
            jitter = self._rngs[channel.id].randint(0, faults.latency_jitter_ms) if faults.latency_jitter_ms else 0
        time.sleep((faults.latency_ms + jitter) / 1000)

    def _fault(self, channel: Channel, amount: int, reference: str) -> str | None:
        """Which fault, if any, this charging call meets: reference trigger, then amount trigger, then the dice.
        The channel's RNG is drawn once per charging call whatever the answer, so a seed replays the same run."""
        faults = channel.faults
        with self._lock:
            roll = self._rngs[channel.id].random()
        if faults.triggers:
            for prefix, kind in REFERENCE_TRIGGERS.items():
                if reference.startswith(prefix):
                    return kind
            if amount % 100 in AMOUNT_TRIGGERS:
                return AMOUNT_TRIGGERS[amount % 100]
        threshold = 0.0
        for rate_name, kind in (
            ("decline_rate", "decline"),
            ("error_rate", "error"),
            ("timeout_rate", "timeout"),
            ("charged_timeout_rate", "charged_timeout"),
        ):
            threshold += getattr(faults, rate_name)
            if roll < threshold:
                return kind
        return None

    def journal(self, query: dict[str, str]) -> Outcome:
        clauses, params = [], []
        for name in ("channel", "op", "reference", "outcome", "request_id"):
            if query.get(name):
                clauses.append(f"{name} = ?")
                params.append(query[name])
        if query.get("date"):
            clauses.append("business_date = ?")
            params.append(_date_param(query["date"], "date").isoformat())
        after = _int_param(query.get("after", "0"), "after", 0, 2**62)
        limit = _int_param(query.get("limit", "100"), "limit", 1, 1000)
        clauses.append("seq > ?")
        params.append(str(after))
        sql = f"SELECT * FROM journal WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?"  # noqa: S608 - fixed names
        rows = self.store.connection().execute(sql, [*params, limit + 1]).fetchall()
        data = [dict(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Outcome(200, {"data": data, "has_more": has_more, "next_after": data[-1]["seq"] if data else after})

    # ---- payments -----------------------------------------------------------------------------------------------

    def authorise(self, body: dict[str, Any], call: Call) -> Outcome:
        channel = self.channel(body.get("channel"))
        reference = _reference(body.get("reference"), "reference")
        amount = _amount(body.get("amount"))
        currency = _currency(body.get("currency"), channel)
        capture = body.get("capture", False)
        if not isinstance(capture, bool):
            raise SimError(400, "invalid_capture", "capture must be true or false", "capture")
        kind, instrument_ref = _instrument(body.get("instrument"), channel)
        entry = Entry(
            "sale" if capture else "authorise", channel.id, reference=reference, amount=amount, currency=currency
        )
        fault_box: list[str | None] = []

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute(
                "SELECT * FROM payments WHERE channel = ? AND reference = ?", (channel.id, reference)
            ).fetchone()
            if row is not None:
                if (row["amount"], row["currency"], row["instrument_kind"], row["instrument_ref"]) != (
                    amount,
                    currency,
                    kind,
                    instrument_ref,
                ):
                    raise SimError(
                        409,
                        "idempotency_mismatch",
                        "this reference was already used for a different payment",
                        "reference",
                    )
                entry.outcome, entry.object_id = "replayed", row["id"]
                return Outcome(200, {**_payment_json(conn, row), "replayed": True})
            fault = self._fault(channel, amount, reference)
            fault_box.append(fault)
            if fault == "error":
                raise SimError(500, "channel_error", "the channel failed; nothing was charged")
            if fault == "timeout":
                entry.outcome, entry.code = "timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            decline = DECLINE_CODES.get(fault or "")
            hold_id = None
            if decline is None and kind == "account":
                decline, hold_id = self._hold_for_payment(
                    conn, at, channel, instrument_ref, amount, currency, reference
                )
            payment_id = _new_id("pay")
            business_date = self.business_date(channel, at).isoformat()
            if decline is not None:
                state, captured, auth_code, captured_at = "declined", 0, None, None
            elif capture:
                state, captured, auth_code, captured_at = "captured", amount, _auth_code(), _iso(at)
                if hold_id is not None:
                    _capture_hold(conn, hold_id, amount, at)
            else:
                state, captured, auth_code, captured_at = "authorised", 0, _auth_code(), None
            conn.execute(
                "INSERT INTO payments (id, channel, reference, instrument_kind, instrument_ref, amount, currency,"
                " state, decline_code, auth_code, captured_amount, hold_id, created_at, updated_at, business_date,"
                " captured_at, captured_business_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    payment_id,
                    channel.id,
                    reference,
                    kind,
                    instrument_ref,
                    amount,
                    currency,
                    state,
                    decline,
                    auth_code,
                    captured,
                    hold_id,
                    _iso(at),
                    _iso(at),
                    business_date,
                    captured_at,
                    business_date if captured_at else None,
                ),
            )
            entry.object_id = payment_id
            if decline is not None:
                entry.outcome, entry.code = "declined", decline
            if captured:
                entry.money, entry.fee = captured, fee_for(captured, channel.fee_bps)
            row = conn.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchone()
            if fault == "charged_timeout":
                entry.outcome, entry.code = "charged_timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            return Outcome(200, {**_payment_json(conn, row), "replayed": False})

        return self._run(call, entry, channel, work)

    def _hold_for_payment(
        self,
        conn: sqlite3.Connection,
        at: datetime,
        channel: Channel,
        account_id: str,
        amount: int,
        currency: str,
        reference: str,
    ) -> tuple[str | None, str | None]:
        """Hold the payment's amount on the payer's account: (decline code, hold id)."""
        account = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if account is None or account["channel"] != channel.id:
            return "invalid_account", None
        if account["currency"] != currency:
            return "currency_mismatch", None
        hold_id = _new_id("hold")
        if not _take_hold(conn, account_id, amount):
            return "insufficient_funds", None
        conn.execute(
            "INSERT INTO holds (id, account_id, reference, amount, currency, state, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'held', ?, ?)",
            (hold_id, account_id, f"payment:{reference}", amount, currency, _iso(at), _iso(at)),
        )
        return None, hold_id

    def _payment_op(
        self,
        op: str,
        body: dict[str, Any],
        call: Call,
        step: Callable[[sqlite3.Connection, datetime, Entry, Channel, sqlite3.Row], Outcome],
        op_reference: str | None = None,
    ) -> Outcome:
        channel = self.channel(body.get("channel"))
        reference = _reference(body.get("reference"), "reference")
        entry = Entry(op, channel.id, reference=reference, op_reference=op_reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute(
                "SELECT * FROM payments WHERE channel = ? AND reference = ?", (channel.id, reference)
            ).fetchone()
            if row is None:
                raise SimError(404, "payment_not_found", f"no payment {reference!r} on {channel.id}", "reference")
            entry.object_id, entry.currency = row["id"], row["currency"]
            return step(conn, at, entry, channel, row)

        return self._run(call, entry, channel, work)

    def capture(self, body: dict[str, Any], call: Call) -> Outcome:
        requested = None if body.get("amount") is None else _amount(body.get("amount"))

        def step(conn: sqlite3.Connection, at: datetime, entry: Entry, channel: Channel, row: sqlite3.Row) -> Outcome:
            amount = row["amount"] if requested is None else requested
            entry.amount = amount
            if row["state"] in ("captured", "partially_refunded", "refunded"):
                if requested not in (None, row["captured_amount"]):
                    raise SimError(409, "already_captured", "the payment was already captured for another amount")
                entry.outcome, entry.amount = "replayed", row["captured_amount"]
                return Outcome(200, {**_payment_json(conn, row), "replayed": True})
            if row["state"] != "authorised":
                raise SimError(409, "invalid_state", f"a {row['state']} payment cannot be captured")
            if amount > row["amount"]:
                raise SimError(422, "amount_exceeds_authorised", "cannot capture more than was authorised", "amount")
            if row["hold_id"]:
                _capture_hold(conn, row["hold_id"], amount, at)
            conn.execute(
                "UPDATE payments SET state = 'captured', captured_amount = ?, captured_at = ?, updated_at = ?,"
                " captured_business_date = ? WHERE id = ?",
                (amount, _iso(at), _iso(at), entry.business_date, row["id"]),
            )
            entry.money, entry.fee = amount, fee_for(amount, channel.fee_bps)
            fresh = conn.execute("SELECT * FROM payments WHERE id = ?", (row["id"],)).fetchone()
            return Outcome(200, {**_payment_json(conn, fresh), "replayed": False})

        return self._payment_op("capture", body, call, step)

    def void(self, body: dict[str, Any], call: Call) -> Outcome:
        def step(conn: sqlite3.Connection, at: datetime, entry: Entry, channel: Channel, row: sqlite3.Row) -> Outcome:
            entry.amount = row["amount"]
            if row["state"] == "voided":
                entry.outcome = "replayed"
                return Outcome(200, {**_payment_json(conn, row), "replayed": True})
            if row["state"] != "authorised":
                raise SimError(409, "invalid_state", f"a {row['state']} payment cannot be voided; refund or reverse it")
            if row["hold_id"]:
                _release_hold(conn, row["hold_id"], at)
            conn.execute("UPDATE payments SET state = 'voided', updated_at = ? WHERE id = ?", (_iso(at), row["id"]))
            fresh = conn.execute("SELECT * FROM payments WHERE id = ?", (row["id"],)).fetchone()
            return Outcome(200, {**_payment_json(conn, fresh), "replayed": False})

        return self._payment_op("void", body, call, step)

    def refund(self, body: dict[str, Any], call: Call) -> Outcome:
        refund_reference = _reference(body.get("refund_reference"), "refund_reference")
        amount = _amount(body.get("amount"))

        def step(conn: sqlite3.Connection, at: datetime, entry: Entry, channel: Channel, row: sqlite3.Row) -> Outcome:
            entry.amount = amount
            existing = conn.execute(
                "SELECT * FROM refunds WHERE payment_id = ? AND refund_reference = ?", (row["id"], refund_reference)
            ).fetchone()
            if existing is not None:
                if existing["amount"] != amount:
                    raise SimError(
                        409, "idempotency_mismatch", "this refund reference was used for another amount", "amount"
                    )
                entry.outcome, entry.object_id = "replayed", existing["id"]
                return Outcome(200, {**_refund_json(existing, row), "replayed": True})
            if row["state"] not in ("captured", "partially_refunded"):
                raise SimError(409, "invalid_state", f"a {row['state']} payment cannot be refunded")
            if row["refunded_amount"] + amount > row["captured_amount"]:
                raise SimError(
                    422,
                    "refund_exceeds_captured",
                    f"only {row['captured_amount'] - row['refunded_amount']} is left to refund",
                    "amount",
                )
            if row["instrument_kind"] == "account":
                _credit(conn, row["instrument_ref"], amount)
            refund_id = _new_id("re")
            refunded = row["refunded_amount"] + amount
            state = "refunded" if refunded == row["captured_amount"] else "partially_refunded"
            conn.execute(
                "INSERT INTO refunds (id, payment_id, refund_reference, amount, currency, created_at, business_date)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (refund_id, row["id"], refund_reference, amount, row["currency"], _iso(at), entry.business_date),
            )
            conn.execute(
                "UPDATE payments SET refunded_amount = ?, state = ?, updated_at = ? WHERE id = ?",
                (refunded, state, _iso(at), row["id"]),
            )
            entry.object_id, entry.money = refund_id, -amount
            fresh_refund = conn.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
            fresh = conn.execute("SELECT * FROM payments WHERE id = ?", (row["id"],)).fetchone()
            return Outcome(200, {**_refund_json(fresh_refund, fresh), "replayed": False})

        return self._payment_op("refund", body, call, step, op_reference=refund_reference)

    def reverse(self, body: dict[str, Any], call: Call) -> Outcome:
        """冲正: undo an authorisation (release) or a capture (return what was not yet refunded). Idempotent."""

        def step(conn: sqlite3.Connection, at: datetime, entry: Entry, channel: Channel, row: sqlite3.Row) -> Outcome:
            entry.amount = row["amount"]
            if row["state"] == "reversed":
                entry.outcome = "replayed"
                return Outcome(200, {**_payment_json(conn, row), "replayed": True})
            if row["state"] not in ("authorised", "captured", "partially_refunded"):
                raise SimError(409, "invalid_state", f"a {row['state']} payment has nothing to reverse")
            returned = row["captured_amount"] - row["refunded_amount"]
            if row["state"] == "authorised":
                if row["hold_id"]:
                    _release_hold(conn, row["hold_id"], at)
            elif row["instrument_kind"] == "account" and returned:
                _credit(conn, row["instrument_ref"], returned)
            conn.execute(
                "UPDATE payments SET state = 'reversed', reversed_amount = ?, updated_at = ? WHERE id = ?",
                (returned, _iso(at), row["id"]),
            )
            entry.money = -returned
            fresh = conn.execute("SELECT * FROM payments WHERE id = ?", (row["id"],)).fetchone()
            return Outcome(200, {**_payment_json(conn, fresh), "replayed": False})

        return self._payment_op("reverse", body, call, step)

    def payment_status(self, channel_id: str, reference: str, call: Call) -> Outcome:
        channel = self.channel(channel_id)
        reference = _reference(reference, "reference")
        entry = Entry("inquiry", channel.id, reference=reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute(
                "SELECT * FROM payments WHERE channel = ? AND reference = ?", (channel.id, reference)
            ).fetchone()
            if row is None:
                entry.outcome = "not_found"
                return Outcome(200, {"channel": channel.id, "reference": reference, "state": "not_found"})
            entry.object_id, entry.amount, entry.currency = row["id"], row["amount"], row["currency"]
            return Outcome(200, _payment_json(conn, row))

        return self._run(call, entry, channel, work)

    # ---- balance accounts and holds -----------------------------------------------------------------------------

    def open_account(self, body: dict[str, Any], call: Call) -> Outcome:
        channel = self.channel(body.get("channel"))
        if channel.kind not in BALANCE_KINDS:
            raise SimError(400, "not_a_balance_channel", f"{channel.id} keeps no balances", "channel")
        account_id = body.get("account_id")
        account_id = _new_id("acct") if account_id is None else _reference(account_id, "account_id")
        currency = _currency(body.get("currency"), channel)
        balance = body.get("balance", 0)
        if isinstance(balance, bool) or not isinstance(balance, int) or not 0 <= balance <= MAX_AMOUNT:
            raise SimError(400, "invalid_amount", "balance must be a non-negative integer of minor units", "balance")
        holder = body.get("holder", "")
        if not isinstance(holder, str) or len(holder) > 128:
            raise SimError(400, "invalid_holder", "holder must be a string of at most 128 characters", "holder")
        entry = Entry("account_open", channel.id, reference=account_id, amount=balance, currency=currency)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if row is not None:
                if (row["channel"], row["currency"], row["holder"]) != (channel.id, currency, holder):
                    raise SimError(409, "idempotency_mismatch", "this account id already exists", "account_id")
                entry.outcome, entry.object_id = "replayed", account_id
                return Outcome(200, {**_account_json(row), "replayed": True})
            conn.execute(
                "INSERT INTO accounts (id, channel, holder, currency, balance, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (account_id, channel.id, holder, currency, balance, _iso(at)),
            )
            entry.object_id = account_id
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            return Outcome(200, {**_account_json(row), "replayed": False})

        return self._run(call, entry, channel, work, faults=False)  # a sandbox call: no latency, works when down

    def _account_channel(self, account_id: str) -> tuple[sqlite3.Row, Channel]:
        row = self.store.connection().execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise SimError(404, "account_not_found", f"no account {account_id!r}", "account_id")
        return row, self.channel(row["channel"])

    def account_inquiry(self, account_id: str, call: Call) -> Outcome:
        account_id = _reference(account_id, "account_id")
        _, channel = self._account_channel(account_id)
        entry = Entry("account_inquiry", channel.id, reference=account_id, object_id=account_id)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
            entry.amount, entry.currency = row["balance"] - row["held"], row["currency"]
            return Outcome(200, _account_json(row))

        return self._run(call, entry, channel, work)

    def hold(self, account_id: str, body: dict[str, Any], call: Call) -> Outcome:
        account_id = _reference(account_id, "account_id")
        account, channel = self._account_channel(account_id)
        reference = _reference(body.get("reference"), "reference")
        amount = _amount(body.get("amount"))
        currency = body.get("currency", account["currency"])
        if currency != account["currency"]:
            raise SimError(400, "currency_mismatch", f"the account is in {account['currency']}", "currency")
        entry = Entry(
            "hold", channel.id, reference=reference, op_reference=account_id, amount=amount, currency=currency
        )

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute(
                "SELECT * FROM holds WHERE account_id = ? AND reference = ?", (account_id, reference)
            ).fetchone()
            if row is not None:
                if row["amount"] != amount:
                    raise SimError(409, "idempotency_mismatch", "this reference holds another amount", "reference")
                entry.outcome, entry.object_id = "replayed", row["id"]
                return Outcome(200, {**_hold_json(row), "replayed": True})
            fault = self._fault(channel, amount, reference)
            if fault == "error":
                raise SimError(500, "channel_error", "the bank failed; nothing was held")
            if fault == "timeout":
                entry.outcome, entry.code = "timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            if fault == "insufficient_funds":
                raise SimError(422, "insufficient_funds", "the available balance is too low", "amount")
            if fault in ("decline", "fraud"):
                raise SimError(422, "hold_refused", "the bank refused the hold", "amount")
            if not _take_hold(conn, account_id, amount):
                raise SimError(422, "insufficient_funds", "the available balance is too low", "amount")
            hold_id = _new_id("hold")
            conn.execute(
                "INSERT INTO holds (id, account_id, reference, amount, currency, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'held', ?, ?)",
                (hold_id, account_id, reference, amount, currency, _iso(at), _iso(at)),
            )
            entry.object_id = hold_id
            row = conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
            if fault == "charged_timeout":
                entry.outcome, entry.code = "charged_timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            return Outcome(200, {**_hold_json(row), "replayed": False})

        return self._run(call, entry, channel, work)

    def hold_status(self, account_id: str, reference: str, call: Call) -> Outcome:
        account_id = _reference(account_id, "account_id")
        reference = _reference(reference, "reference")
        _, channel = self._account_channel(account_id)
        entry = Entry("hold_inquiry", channel.id, reference=reference, op_reference=account_id)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute(
                "SELECT * FROM holds WHERE account_id = ? AND reference = ?", (account_id, reference)
            ).fetchone()
            if row is None:
                entry.outcome = "not_found"
                return Outcome(200, {"account_id": account_id, "reference": reference, "state": "not_found"})
            entry.object_id, entry.amount, entry.currency = row["id"], row["amount"], row["currency"]
            return Outcome(200, _hold_json(row))

        return self._run(call, entry, channel, work)

    def _hold_op(
        self,
        op: str,
        hold_id: str,
        call: Call,
        step: Callable[[sqlite3.Connection, datetime, Entry, Channel, sqlite3.Row], Outcome],
    ) -> Outcome:
        hold_id = _reference(hold_id, "hold_id")
        found = (
            self.store.connection()
            .execute(
                "SELECT holds.*, accounts.channel AS channel FROM holds JOIN accounts ON accounts.id = holds.account_id"
                " WHERE holds.id = ?",
                (hold_id,),
            )
            .fetchone()
        )
        if found is None:
            raise SimError(404, "hold_not_found", f"no hold {hold_id!r}", "hold_id")
        channel = self.channel(found["channel"])
        entry = Entry(op, channel.id, reference=found["reference"], op_reference=found["account_id"], object_id=hold_id)
        entry.currency = found["currency"]

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
            if row["reference"].startswith("payment:"):
                raise SimError(409, "hold_owned_by_payment", "capture, void or reverse the payment instead")
            return step(conn, at, entry, channel, row)

        return self._run(call, entry, channel, work)

    def hold_capture(self, hold_id: str, body: dict[str, Any], call: Call) -> Outcome:
        requested = None if body.get("amount") is None else _amount(body.get("amount"))

        def step(conn: sqlite3.Connection, at: datetime, entry: Entry, channel: Channel, row: sqlite3.Row) -> Outcome:
            amount = row["amount"] if requested is None else requested
            entry.amount = amount
            if row["state"] == "captured":
                if requested not in (None, row["captured_amount"]):
                    raise SimError(409, "already_captured", "the hold was already captured for another amount")
                entry.outcome = "replayed"
                return Outcome(200, {**_hold_json(row), "replayed": True})
            if row["state"] != "held":
                raise SimError(409, "invalid_state", f"a {row['state']} hold cannot be captured")
            if amount > row["amount"]:
                raise SimError(422, "amount_exceeds_held", "cannot capture more than is held", "amount")
            _capture_hold(conn, row["id"], amount, at)
            entry.money, entry.fee = amount, fee_for(amount, channel.fee_bps)
            fresh = conn.execute("SELECT * FROM holds WHERE id = ?", (row["id"],)).fetchone()
            return Outcome(200, {**_hold_json(fresh), "replayed": False})

        return self._hold_op("hold_capture", hold_id, call, step)

    def hold_release(self, hold_id: str, call: Call) -> Outcome:
        def step(conn: sqlite3.Connection, at: datetime, entry: Entry, channel: Channel, row: sqlite3.Row) -> Outcome:
            entry.amount = row["amount"]
            if row["state"] == "released":
                entry.outcome = "replayed"
                return Outcome(200, {**_hold_json(row), "replayed": True})
            if row["state"] != "held":
                raise SimError(409, "invalid_state", f"a {row['state']} hold cannot be released")
            _release_hold(conn, row["id"], at)
            fresh = conn.execute("SELECT * FROM holds WHERE id = ?", (row["id"],)).fetchone()
            return Outcome(200, {**_hold_json(fresh), "replayed": False})

        return self._hold_op("hold_release", hold_id, call, step)

    # ---- payouts ------------------------------------------------------------------------------------------------

    def _payout_fault(self, channel: Channel, reference: str, last4: str) -> str | None:
        """Which fault or return a new payout meets: reference trigger, then account trigger, then the dice (one draw
        per new payout, as for the charging calls; `decline_rate` does not apply: a payout is not declined)."""
        faults = channel.faults
        with self._lock:
            roll = self._rngs[channel.id].random()
        if faults.triggers:
            for prefix, kind in PAYOUT_REFERENCE_TRIGGERS.items():
                if reference.startswith(prefix):
                    return kind
            if last4 in PAYOUT_ACCOUNT_TRIGGERS:
                return PAYOUT_ACCOUNT_TRIGGERS[last4]
        threshold = 0.0
        for rate, kind in (
            (faults.error_rate, "error"),
            (faults.timeout_rate, "timeout"),
            (faults.charged_timeout_rate, "accepted_timeout"),
            (faults.payout_return_rate, f"return:{faults.payout_return_reason}"),
        ):
            threshold += rate
            if roll < threshold:
                return kind
        return None

    def payout(self, body: dict[str, Any], call: Call) -> Outcome:
        """Accepts a payout to a beneficiary account, once per reference; its result is due `payout_delay_ms` later."""
        channel = self.channel(body.get("channel"))
        reference = _reference(body.get("reference"), "reference")
        amount = _amount(body.get("amount"))
        currency = _currency(body.get("currency"), channel)
        last4, token, name = _payout_account(body.get("account"))
        entry = Entry("payout", channel.id, reference=reference, amount=amount, currency=currency)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM payouts WHERE reference = ?", (reference,)).fetchone()
            if row is not None:
                stored = (row["channel"], row["amount"], row["currency"], row["account_last4"], row["account_token"],
                          row["account_name"])  # fmt: skip
                if stored != (channel.id, amount, currency, last4, token, name):
                    raise SimError(
                        409,
                        "idempotency_mismatch",
                        "this reference was already used for a different payout",
                        "reference",
                    )
                row = _payout_due(conn, row, at)
                entry.outcome, entry.object_id = "replayed", row["id"]
                return Outcome(200, {**_payout_json(row), "replayed": True})
            fault = self._payout_fault(channel, reference, last4)
            if fault == "error":
                raise SimError(500, "channel_error", "the channel failed; nothing was accepted")
            if fault == "timeout":
                entry.outcome, entry.code = "timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            returned = fault is not None and fault.startswith("return:")
            reason = fault.split(":", 1)[1] if fault is not None and returned else None
            payout_id = _new_id("po")
            due = at + timedelta(milliseconds=channel.faults.payout_delay_ms)
            conn.execute(
                "INSERT INTO payouts (id, channel, reference, amount, currency, account_last4, account_token,"
                " account_name, state, result, return_reason, due_at, business_date, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?, ?, ?, ?, ?)",
                (payout_id, channel.id, reference, amount, currency, last4, token, name,
                 "returned" if returned else "paid", reason, _iso(due), entry.business_date, _iso(at)),
            )  # fmt: skip
            entry.object_id = payout_id
            row = _payout_due(conn, conn.execute("SELECT * FROM payouts WHERE id = ?", (payout_id,)).fetchone(), at)
            if fault == "accepted_timeout":
                entry.outcome, entry.code = "accepted_timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            return Outcome(200, {**_payout_json(row), "replayed": False})

        return self._run(call, entry, channel, work)

    def payout_status(self, reference: str, call: Call) -> Outcome:
        """A payout by its reference: accepted, or its result once due. An unknown reference answers `not_found` and
        is not journaled (no channel to file it under)."""
        reference = _reference(reference, "reference")
        found = (
            self.store.connection().execute("SELECT channel FROM payouts WHERE reference = ?", (reference,)).fetchone()
        )
        if found is None:
            return Outcome(200, {"reference": reference, "state": "not_found"})
        channel = self.channel(found["channel"])
        entry = Entry("payout_inquiry", channel.id, reference=reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = _payout_due(
                conn, conn.execute("SELECT * FROM payouts WHERE reference = ?", (reference,)).fetchone(), at
            )
            entry.object_id, entry.amount, entry.currency = row["id"], row["amount"], row["currency"]
            entry.code = row["return_reason"] if row["state"] == "returned" else None
            return Outcome(200, _payout_json(row))

        return self._run(call, entry, channel, work)

    # ---- clearing instructions ----------------------------------------------------------------------------------

    def clearing_instruct(self, body: dict[str, Any], call: Call) -> Outcome:
        """Accepts a clearing instruction (a member pays into the clearing channel, or is paid out of it), once per
        reference; its result (confirmed, or failed at `payout_return_rate`) is due `payout_delay_ms` later."""
        channel = self.channel(body.get("channel"))
        if channel.kind != "clearing":
            raise SimError(400, "not_a_clearing_channel", f"{channel.id} takes no clearing instructions", "channel")
        reference = _reference(body.get("reference"), "reference")
        amount = _amount(body.get("amount"))
        currency = _currency(body.get("currency"), channel)
        direction = body.get("direction")
        if direction not in ("pay", "receive"):
            raise SimError(400, "invalid_direction", "direction is pay or receive", "direction")
        party = body.get("party")
        if not isinstance(party, str) or not REFERENCE.match(party):
            raise SimError(400, "invalid_party", "party must be 1-64 of A-Z a-z 0-9 . _ : -", "party")
        entry = Entry("clearing_instruction", channel.id, reference=reference, amount=amount, currency=currency)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM clearing_instructions WHERE reference = ?", (reference,)).fetchone()
            if row is not None:
                stored = (row["channel"], row["party"], row["direction"], row["amount"], row["currency"])
                if stored != (channel.id, party, direction, amount, currency):
                    raise SimError(
                        409,
                        "idempotency_mismatch",
                        "this reference was already used for a different instruction",
                        "reference",
                    )
                row = _clearing_due(conn, row, at)
                entry.outcome, entry.object_id = "replayed", row["id"]
                return Outcome(200, {**_clearing_json(row), "replayed": True})
            fault = self._payout_fault(channel, reference, "")
            if fault == "error":
                raise SimError(500, "channel_error", "the channel failed; nothing was accepted")
            if fault == "timeout":
                entry.outcome, entry.code = "timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            failed = fault is not None and fault.startswith("return:")
            instruction_id = _new_id("ci")
            due = at + timedelta(milliseconds=channel.faults.payout_delay_ms)
            conn.execute(
                "INSERT INTO clearing_instructions (id, channel, reference, party, direction, amount, currency, state,"
                " result, failure_reason, due_at, business_date, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'accepted', ?, ?, ?, ?, ?)",
                (instruction_id, channel.id, reference, party, direction, amount, currency,
                 "failed" if failed else "confirmed", "beneficiary_refused" if failed else None, _iso(due),
                 entry.business_date, _iso(at)),
            )  # fmt: skip
            entry.object_id = instruction_id
            row = conn.execute("SELECT * FROM clearing_instructions WHERE id = ?", (instruction_id,)).fetchone()
            row = _clearing_due(conn, row, at)
            if fault == "accepted_timeout":
                entry.outcome, entry.code = "accepted_timeout", "timeout"
                return Outcome(504, TIMEOUT_BODY, hang_ms=channel.faults.hang_ms)
            return Outcome(200, {**_clearing_json(row), "replayed": False})

        return self._run(call, entry, channel, work)

    def clearing_instruction_status(self, reference: str, call: Call) -> Outcome:
        """A clearing instruction by its reference: accepted, or its result once due; `not_found` (not journaled) for
        a reference no clearing channel accepted."""
        reference = _reference(reference, "reference")
        found = (
            self.store.connection()
            .execute("SELECT channel FROM clearing_instructions WHERE reference = ?", (reference,))
            .fetchone()
        )
        if found is None:
            return Outcome(200, {"reference": reference, "state": "not_found"})
        channel = self.channel(found["channel"])
        entry = Entry("clearing_inquiry", channel.id, reference=reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM clearing_instructions WHERE reference = ?", (reference,)).fetchone()
            row = _clearing_due(conn, row, at)
            entry.object_id, entry.amount, entry.currency = row["id"], row["amount"], row["currency"]
            entry.code = row["failure_reason"] if row["state"] == "failed" else None
            return Outcome(200, _clearing_json(row))

        return self._run(call, entry, channel, work)

    # ---- disputes -----------------------------------------------------------------------------------------------

    def dispute_open(self, body: dict[str, Any], call: Call) -> Outcome:
        """The channel disputes a captured payment it knows (an admin call: what a card scheme would send). A notice
        `opened` goes to the feed; the planned `outcome` (won unless told) is decided `dispute_decision_ms` after the
        merchant's answer, or at once by `dispute_decide`."""
        channel = self.channel(body.get("channel"))
        reference = _reference(body.get("reference"), "reference")
        kind = body.get("kind")
        if kind not in DISPUTE_KINDS:
            raise SimError(400, "invalid_kind", f"kind must be one of {', '.join(DISPUTE_KINDS)}", "kind")
        requested = None if body.get("amount") is None else _amount(body.get("amount"))
        reason_code = body.get("reason_code", "")
        if not isinstance(reason_code, str) or not REASON_CODE.match(reason_code):
            raise SimError(400, "invalid_reason_code", "reason_code is 0-16 of A-Z a-z 0-9 . _ -", "reason_code")
        planned = body.get("outcome", "won")
        if planned not in DISPUTE_OUTCOMES:
            raise SimError(400, "invalid_outcome", "outcome is won or lost", "outcome")
        entry = Entry("dispute_open", channel.id, reference=reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            payment = conn.execute(
                "SELECT * FROM payments WHERE channel = ? AND reference = ?", (channel.id, reference)
            ).fetchone()
            if payment is None:
                raise SimError(404, "payment_not_found", f"no payment {reference!r} on {channel.id}", "reference")
            if payment["captured_amount"] <= 0 or payment["state"] not in ("captured", "partially_refunded"):
                raise SimError(409, "invalid_state", f"a {payment['state']} payment cannot be disputed")
            disputed = conn.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM disputes WHERE payment_id = ? AND kind != 'retrieval'"
                " AND state != 'won'",
                (payment["id"],),
            ).fetchone()[0]
            left = payment["captured_amount"] - payment["refunded_amount"] - disputed
            amount = (left if kind != "retrieval" else payment["captured_amount"]) if requested is None else requested
            if kind != "retrieval" and not 0 < amount <= left:
                raise SimError(422, "dispute_exceeds_available", f"only {max(left, 0)} is left to dispute", "amount")
            if kind == "retrieval" and amount > payment["captured_amount"]:
                raise SimError(422, "dispute_exceeds_available", "more than was captured", "amount")
            dispute_id = _new_id("dsp")
            conn.execute(
                "INSERT INTO disputes (id, channel, payment_id, reference, kind, amount, currency, reason_code, state,"
                " planned_outcome, business_date, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (dispute_id, channel.id, payment["id"], reference, kind, amount, payment["currency"], reason_code,
                 planned, entry.business_date, _iso(at)),
            )  # fmt: skip
            entry.object_id, entry.amount, entry.currency = dispute_id, amount, payment["currency"]
            row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            _dispute_notice(conn, row, "opened", at)
            return Outcome(200, {**_dispute_json(row), "planned_outcome": planned})

        return self._run(call, entry, channel, work, faults=False)

    def _dispute_row(self, dispute_id: str) -> tuple[sqlite3.Row, Channel]:
        row = self.store.connection().execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
        if row is None:
            raise SimError(404, "dispute_not_found", f"no dispute {dispute_id!r}", "dispute")
        return row, self.channel(row["channel"])

    def dispute_respond(self, dispute_id: str, body: dict[str, Any], call: Call) -> Outcome:
        """The merchant's answer, through the acquirer: once per dispute, idempotent by its `reference` (the same
        answer again is a replay; another content under it, 409 `idempotency_mismatch`; another answer, 409
        `already_answered`). Refused once the dispute is decided."""
        reference = _reference(body.get("reference"), "reference")
        text = body.get("text", "")
        if not isinstance(text, str) or len(text) > 20_000:
            raise SimError(400, "invalid_text", "text must be a string of at most 20000 characters", "text")
        files = _dispute_files(body.get("files", []))
        content = json.dumps({"text": text, "files": files}, sort_keys=True, ensure_ascii=False)
        _, channel = self._dispute_row(dispute_id)
        entry = Entry("dispute_response", channel.id, op_reference=reference, object_id=dispute_id)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            entry.reference, entry.amount, entry.currency = row["reference"], row["amount"], row["currency"]
            row = _dispute_due(conn, row, at)
            if row["response_reference"] is not None:
                if row["response_reference"] != reference:
                    raise SimError(409, "already_answered", "this dispute was answered already", "reference")
                if row["response"] != content:
                    raise SimError(
                        409, "idempotency_mismatch", "this reference was used for another answer", "reference"
                    )
                entry.outcome = "replayed"
                return Outcome(200, {**_dispute_json(row), "replayed": True})
            if row["state"] != "open":
                raise SimError(409, "invalid_state", f"the dispute is {row['state']}: too late to answer")
            due = at + timedelta(milliseconds=channel.faults.dispute_decision_ms)
            conn.execute(
                "UPDATE disputes SET state = 'answered', response_reference = ?, response = ?, answered_at = ?,"
                " decide_at = ? WHERE id = ?",
                (reference, content, _iso(at), _iso(due), dispute_id),
            )
            row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            _dispute_notice(conn, row, "answered", at)
            row = _dispute_due(conn, row, at)
            return Outcome(200, {**_dispute_json(row), "replayed": False})

        return self._run(call, entry, channel, work)

    def dispute_status(self, dispute_id: str, call: Call) -> Outcome:
        """A dispute by the channel's id, with its decision applied once due (an inquiry: journaled)."""
        _, channel = self._dispute_row(dispute_id)
        entry = Entry("dispute_inquiry", channel.id, object_id=dispute_id)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            entry.reference = row["reference"]
            return Outcome(200, _dispute_json(_dispute_due(conn, row, at)))

        return self._run(call, entry, channel, work)

    def dispute_decide(self, dispute_id: str, body: dict[str, Any], call: Call) -> Outcome:
        """Admin: decide a dispute now (answered or not), won or lost. The same decision again is a replay."""
        outcome = body.get("outcome")
        if outcome not in DISPUTE_OUTCOMES:
            raise SimError(400, "invalid_outcome", "outcome is won or lost", "outcome")
        _, channel = self._dispute_row(dispute_id)
        entry = Entry("dispute_decision", channel.id, object_id=dispute_id, op_reference=outcome)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            entry.reference = row["reference"]
            row = _dispute_due(conn, row, at)
            if row["state"] in DISPUTE_OUTCOMES:
                if row["state"] != outcome:
                    raise SimError(409, "invalid_state", f"the dispute was decided {row['state']} already")
                entry.outcome = "replayed"
                return Outcome(200, {**_dispute_json(row), "replayed": True})
            conn.execute(
                "UPDATE disputes SET state = ?, planned_outcome = ?, decided_at = ? WHERE id = ?",
                (outcome, outcome, _iso(at), dispute_id),
            )
            row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
            _dispute_notice(conn, row, "decided", at)
            return Outcome(200, {**_dispute_json(row), "replayed": False})

        return self._run(call, entry, channel, work, faults=False)

    def dispute_notices(self, query: dict[str, str]) -> Outcome:
        """The feed: notices (opened, answered, decided) after `after`, oldest first, of one channel or all. Decisions
        that fell due are written first, so a poll sees them. Not journaled (a read of the channel's outbox)."""
        after = _int_param(query.get("after", "0"), "after", 0, 2**62)
        limit = _int_param(query.get("limit", "100"), "limit", 1, 1000)
        channel_id = query.get("channel") or None
        if channel_id is not None:
            self.channel(channel_id)
        with self.store.write() as conn:
            at = self.now()
            due = conn.execute(
                "SELECT * FROM disputes WHERE state = 'answered' AND decide_at <= ? ORDER BY decide_at, id", (_iso(at),)
            ).fetchall()
            for row in due:
                _dispute_due(conn, row, at)
        rows = (
            self.store.connection()
            .execute(
                "SELECT * FROM dispute_notices WHERE seq > ? AND (? IS NULL OR channel = ?) ORDER BY seq LIMIT ?",
                (after, channel_id, channel_id, limit + 1),
            )
            .fetchall()
        )
        data = [
            {"seq": row["seq"], "type": row["type"], "at": row["at"], "dispute": json.loads(row["body"])}
            for row in rows[:limit]
        ]
        return Outcome(
            200, {"data": data, "has_more": len(rows) > limit, "next_after": data[-1]["seq"] if data else after}
        )

    # ---- one-time verification codes ----------------------------------------------------------------------------

    def otp_start(self, body: dict[str, Any], call: Call) -> Outcome:
        channel = self.channel(body.get("channel"))
        reference = _reference(body.get("reference"), "reference")
        phone_hint = body.get("phone_hint")
        if not isinstance(phone_hint, str) or not 1 <= len(phone_hint) <= 32:
            raise SimError(400, "invalid_phone_hint", "phone_hint must be a string of 1-32 characters", "phone_hint")
        entry = Entry("otp_start", channel.id, reference=reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute("SELECT * FROM otps WHERE reference = ?", (reference,)).fetchone()
            if row is not None:
                row = _expire_if_due(conn, row, at)
                if row["channel"] != channel.id or row["phone_hint"] != phone_hint:
                    raise SimError(409, "idempotency_mismatch", "this reference was started for another phone")
                if row["state"] != "pending":
                    raise SimError(409, "otp_closed", f"this verification is {row['state']}; start a new reference")
                entry.outcome = "replayed"
                return Outcome(200, {**_otp_json(row), "replayed": True})
            expires = at + timedelta(seconds=self.otp_ttl_seconds)
            conn.execute(
                "INSERT INTO otps (reference, channel, phone_hint, code, state, max_attempts, expires_at, created_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (reference, channel.id, phone_hint, f"{secrets.randbelow(10**6):06d}", self.otp_max_attempts,
                 _iso(expires), _iso(at)),
            )  # fmt: skip
            row = conn.execute("SELECT * FROM otps WHERE reference = ?", (reference,)).fetchone()
            return Outcome(200, {**_otp_json(row), "replayed": False})

        return self._run(call, entry, channel, work)

    def otp_verify(self, body: dict[str, Any], call: Call) -> Outcome:
        channel = self.channel(body.get("channel"))
        reference = _reference(body.get("reference"), "reference")
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise SimError(400, "parameter_missing", "code is required", "code")
        entry = Entry("otp_verify", channel.id, reference=reference)

        def work(conn: sqlite3.Connection, at: datetime, entry: Entry) -> Outcome:
            row = conn.execute(
                "SELECT * FROM otps WHERE reference = ? AND channel = ?", (reference, channel.id)
            ).fetchone()
            if row is None:
                raise SimError(404, "otp_not_found", f"no verification {reference!r}", "reference")
            row = _expire_if_due(conn, row, at)
            matches = secrets.compare_digest(code.encode(), row["code"].encode())
            if row["state"] == "verified":
                if not matches:
                    raise SimError(409, "otp_closed", "this verification already succeeded", "code")
                entry.outcome = "replayed"
                return Outcome(200, {**_otp_json(row), "replayed": True})
            refusal: dict[str, Any] | None = None
            if row["state"] == "expired":
                refusal = {"code": "otp_expired", "message": "the code has expired; start again"}
            elif row["state"] == "locked":
                refusal = {"code": "otp_locked", "message": "too many wrong codes; start again"}
            elif not matches:
                attempts = row["attempts"] + 1
                state = "locked" if attempts >= row["max_attempts"] else "pending"
                conn.execute(
                    "UPDATE otps SET attempts = ?, state = ? WHERE reference = ?", (attempts, state, reference)
                )
                refusal = (
                    {"code": "otp_locked", "message": "too many wrong codes; start again"}
                    if state == "locked"
                    else {"code": "otp_mismatch", "message": "the code is wrong"}
                )
            if refusal is not None:
                # The attempt counts even though the call is refused, so this refusal commits (not an exception).
                fresh = conn.execute("SELECT * FROM otps WHERE reference = ?", (reference,)).fetchone()
                entry.outcome, entry.code = "refused", refusal["code"]
                left = max(fresh["max_attempts"] - fresh["attempts"], 0) if fresh["state"] == "pending" else 0
                error = SimError(422, refusal["code"], refusal["message"], "code", {"attempts_left": left})
                return Outcome(422, error.body())
            conn.execute(
                "UPDATE otps SET state = 'verified', verified_at = ? WHERE reference = ?", (_iso(at), reference)
            )
            fresh = conn.execute("SELECT * FROM otps WHERE reference = ?", (reference,)).fetchone()
            return Outcome(200, {**_otp_json(fresh), "replayed": False})

        return self._run(call, entry, channel, work)

    def otp_peek(self, reference: str) -> Outcome:
        reference = _reference(reference, "reference")
        row = self.store.connection().execute("SELECT * FROM otps WHERE reference = ?", (reference,)).fetchone()
        if row is None:
            raise SimError(404, "otp_not_found", f"no verification {reference!r}", "reference")
        return Outcome(200, {**_otp_json(row), "code": row["code"], "attempts": row["attempts"]})


# ---- helpers on rows ----------------------------------------------------------------------------------------------


def _take_hold(conn: sqlite3.Connection, account_id: str, amount: int) -> bool:
    """Reserve `amount` if (and only if) the available balance covers it — the guard is in the UPDATE itself."""
    cursor = conn.execute(
        "UPDATE accounts SET held = held + ? WHERE id = ? AND balance - held >= ?", (amount, account_id, amount)
    )
    return cursor.rowcount == 1


def _capture_hold(conn: sqlite3.Connection, hold_id: str, amount: int, at: datetime) -> None:
    """Take `amount` (≤ held) off the balance and release the rest of the hold."""
    hold = conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
    conn.execute(
        "UPDATE accounts SET balance = balance - ?, held = held - ? WHERE id = ?",
        (amount, hold["amount"], hold["account_id"]),
    )
    conn.execute(
        "UPDATE holds SET state = 'captured', captured_amount = ?, updated_at = ? WHERE id = ?",
        (amount, _iso(at), hold_id),
    )


def _release_hold(conn: sqlite3.Connection, hold_id: str, at: datetime) -> None:
    hold = conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
    conn.execute("UPDATE accounts SET held = held - ? WHERE id = ?", (hold["amount"], hold["account_id"]))
    conn.execute("UPDATE holds SET state = 'released', updated_at = ? WHERE id = ?", (_iso(at), hold_id))


def _credit(conn: sqlite3.Connection, account_id: str, amount: int) -> None:
    conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, account_id))


def _expire_if_due(conn: sqlite3.Connection, row: sqlite3.Row, at: datetime) -> sqlite3.Row:
    if row["state"] == "pending" and at >= _parse_iso(row["expires_at"]):
        conn.execute("UPDATE otps SET state = 'expired' WHERE reference = ?", (row["reference"],))
        fresh: sqlite3.Row = conn.execute("SELECT * FROM otps WHERE reference = ?", (row["reference"],)).fetchone()
        return fresh
    return row


def _payment_json(conn: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    refunds = conn.execute(
        "SELECT * FROM refunds WHERE payment_id = ? ORDER BY created_at, id", (row["id"],)
    ).fetchall()
    return {
        "id": row["id"],
        "channel": row["channel"],
        "reference": row["reference"],
        "state": row["state"],
        "amount": row["amount"],
        "currency": row["currency"],
        "captured_amount": row["captured_amount"],
        "refunded_amount": row["refunded_amount"],
        "reversed_amount": row["reversed_amount"],
        "decline_code": row["decline_code"],
        "auth_code": row["auth_code"],
        "instrument": {"kind": row["instrument_kind"], "ref": row["instrument_ref"]},
        "hold_id": row["hold_id"],
        "business_date": row["business_date"],
        "created_at": row["created_at"],
        "captured_at": row["captured_at"],
        "captured_business_date": row["captured_business_date"],
        "updated_at": row["updated_at"],
        "refunds": [
            {
                "id": r["id"],
                "refund_reference": r["refund_reference"],
                "amount": r["amount"],
                "created_at": r["created_at"],
            }
            for r in refunds
        ],
    }


def _refund_json(refund: sqlite3.Row, payment: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": refund["id"],
        "payment_id": payment["id"],
        "channel": payment["channel"],
        "reference": payment["reference"],
        "refund_reference": refund["refund_reference"],
        "amount": refund["amount"],
        "currency": refund["currency"],
        "state": "succeeded",
        "business_date": refund["business_date"],
        "created_at": refund["created_at"],
        "payment_state": payment["state"],
        "payment_refunded_amount": payment["refunded_amount"],
    }


def _account_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "holder": row["holder"],
        "currency": row["currency"],
        "balance": row["balance"],
        "held": row["held"],
        "available": row["balance"] - row["held"],
        "created_at": row["created_at"],
    }


def _hold_json(row: sqlite3.Row) -> dict[str, Any]:
    released = row["amount"] - row["captured_amount"] if row["state"] != "held" else 0
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "reference": row["reference"],
        "amount": row["amount"],
        "currency": row["currency"],
        "state": row["state"],
        "captured_amount": row["captured_amount"],
        "released_amount": released,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _payout_due(conn: sqlite3.Connection, row: sqlite3.Row, at: datetime) -> sqlite3.Row:
    """The payout with its result applied once due (it took effect at `due_at`, whenever it is first looked at)."""
    if row["state"] == "accepted" and at >= _parse_iso(row["due_at"]):
        conn.execute(
            "UPDATE payouts SET state = result, finished_at = due_at WHERE id = ? AND state = 'accepted'", (row["id"],)
        )
        fresh: sqlite3.Row = conn.execute("SELECT * FROM payouts WHERE id = ?", (row["id"],)).fetchone()
        return fresh
    return row


def _clearing_due(conn: sqlite3.Connection, row: sqlite3.Row, at: datetime) -> sqlite3.Row:
    """The clearing instruction with its result applied once due."""
    if row["state"] == "accepted" and at >= _parse_iso(row["due_at"]):
        conn.execute(
            "UPDATE clearing_instructions SET state = result, finished_at = due_at WHERE id = ? AND state = 'accepted'",
            (row["id"],),
        )
        fresh: sqlite3.Row = conn.execute("SELECT * FROM clearing_instructions WHERE id = ?", (row["id"],)).fetchone()
        return fresh
    return row


def _dispute_due(conn: sqlite3.Connection, row: sqlite3.Row, at: datetime) -> sqlite3.Row:
    """The dispute with its planned decision applied once due (it was decided at `decide_at`), with its notice."""
    if row["state"] == "answered" and at >= _parse_iso(row["decide_at"]):
        moved = conn.execute(
            "UPDATE disputes SET state = planned_outcome, decided_at = decide_at WHERE id = ? AND state = 'answered'",
            (row["id"],),
        ).rowcount
        fresh: sqlite3.Row = conn.execute("SELECT * FROM disputes WHERE id = ?", (row["id"],)).fetchone()
        if moved:
            _dispute_notice(conn, fresh, "decided", _parse_iso(fresh["decided_at"]))
        return fresh
    return row


def _dispute_notice(conn: sqlite3.Connection, row: sqlite3.Row, kind: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO dispute_notices (dispute_id, channel, type, at, body) VALUES (?, ?, ?, ?, ?)",
        (row["id"], row["channel"], kind, _iso(at), json.dumps(_dispute_json(row), ensure_ascii=False)),
    )


def _dispute_json(row: sqlite3.Row) -> dict[str, Any]:
    response = json.loads(row["response"]) if row["response"] else None
    return {
        "id": row["id"],
        "channel": row["channel"],
        "reference": row["reference"],
        "payment_id": row["payment_id"],
        "kind": row["kind"],
        "amount": row["amount"],
        "currency": row["currency"],
        "reason_code": row["reason_code"],
        "state": row["state"],
        "outcome": row["state"] if row["state"] in DISPUTE_OUTCOMES else None,
        "response": None
        if response is None
        else {"reference": row["response_reference"], "answered_at": row["answered_at"], **response},
        "business_date": row["business_date"],
        "created_at": row["created_at"],
        "decided_at": row["decided_at"],
    }


def _dispute_files(value: Any) -> list[dict[str, Any]]:
    """The answer's files as the acquirer is told of them: name, type, size and SHA-256 (the bytes stay with the
    merchant's platform)."""
    if not isinstance(value, list) or len(value) > 10:
        raise SimError(400, "invalid_files", "files must be a list of at most 10 objects", "files")
    files = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "content_type", "size", "sha256"}:
            raise SimError(400, "invalid_files", "a file is {name, content_type, size, sha256}", "files")
        name, size, digest = item.get("name"), item.get("size", 0), item.get("sha256", "")
        content_type = item.get("content_type", "")
        if not isinstance(name, str) or not 0 < len(name) <= 100 or not isinstance(content_type, str):
            raise SimError(400, "invalid_files", "a file needs a name of 1-100 characters", "files")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SimError(400, "invalid_files", "a file's size is a non-negative integer", "files")
        if not isinstance(digest, str) or (digest and not re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise SimError(400, "invalid_files", "a file's sha256 is 64 lowercase hex digits", "files")
        files.append({"name": name, "content_type": content_type, "size": size, "sha256": digest})
    return files


def _clearing_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "reference": row["reference"],
        "party": row["party"],
        "direction": row["direction"],
        "state": row["state"],
        "amount": row["amount"],
        "currency": row["currency"],
        "failure_reason": row["failure_reason"] if row["state"] == "failed" else None,
        "business_date": row["business_date"],
        "created_at": row["created_at"],
        "due_at": row["due_at"],
        "finished_at": row["finished_at"],
    }


def _payout_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "channel": row["channel"],
        "reference": row["reference"],
        "state": row["state"],
        "amount": row["amount"],
        "currency": row["currency"],
        "account": {"last4": row["account_last4"], "token": row["account_token"], "name": row["account_name"]},
        "return_reason": row["return_reason"] if row["state"] == "returned" else None,
        "business_date": row["business_date"],
        "created_at": row["created_at"],
        "due_at": row["due_at"],
        "finished_at": row["finished_at"],
    }


def _otp_json(row: sqlite3.Row) -> dict[str, Any]:
    state = row["state"]
    return {
        "reference": row["reference"],
        "channel": row["channel"],
        "phone_hint": row["phone_hint"],
        "state": state,
        "attempts_left": max(row["max_attempts"] - row["attempts"], 0) if state == "pending" else 0,
        "expires_at": row["expires_at"],
        "verified_at": row["verified_at"],
    }


def _auth_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


# ---- input parsing ------------------------------------------------------------------------------------------------


def _reference(value: Any, param: str) -> str:
    if value is None:
        raise SimError(400, "parameter_missing", f"{param} is required", param)
    if not isinstance(value, str) or not REFERENCE.match(value):
        raise SimError(400, "invalid_reference", f"{param} must be 1-64 of A-Z a-z 0-9 . _ : -", param)
    return value


def _amount(value: Any) -> int:
    if value is None:
        raise SimError(400, "parameter_missing", "amount is required", "amount")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT:
        raise SimError(400, "invalid_amount", "amount must be a positive integer of minor units", "amount")
    return value


def _currency(value: Any, channel: Channel) -> str:
    if value is None:
        raise SimError(400, "parameter_missing", "currency is required", "currency")
    if value not in channel.currencies:
        raise SimError(400, "currency_not_supported", f"{channel.id} takes {', '.join(channel.currencies)}", "currency")
    return str(value)


def _payout_account(value: Any) -> tuple[str, str, str]:
    """The beneficiary: its last four digits and an opaque token or the holder's name. Never a full account number."""
    if not isinstance(value, dict):
        raise SimError(400, "parameter_missing", "account is required", "account")
    unknown = set(value) - {"last4", "token", "name"}
    if unknown:
        field_name = sorted(unknown)[0]
        raise SimError(
            400, "invalid_account", f"account takes last4, token and name, not {field_name}", f"account.{field_name}"
        )
    last4 = value.get("last4")
    if not isinstance(last4, str) or len(last4) != 4 or not (last4.isascii() and last4.isdigit()):
        raise SimError(400, "invalid_account", "account.last4 must be four digits", "account.last4")
    token = value.get("token", "")
    if not isinstance(token, str) or (token and not REFERENCE.match(token)):
        raise SimError(400, "invalid_account", "account.token must be 1-64 of A-Z a-z 0-9 . _ : -", "account.token")
    name = value.get("name", "")
    if not isinstance(name, str) or len(name) > 128:
        raise SimError(
            400, "invalid_account", "account.name must be a string of at most 128 characters", "account.name"
        )
    if not token and not name.strip():
        raise SimError(400, "invalid_account", "account needs a token or the holder's name", "account")
    return last4, token, name


def _instrument(value: Any, channel: Channel) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise SimError(400, "parameter_missing", "instrument is required", "instrument")
    kind = value.get("kind")
    if kind not in channel.instrument_kinds:
        raise SimError(
            400,
            "instrument_not_supported",
            f"{channel.id} takes instrument kinds {', '.join(channel.instrument_kinds)}",
            "instrument.kind",
        )
    field_name = {"card": "token", "code": "code", "account": "account_id"}[kind]
    ref = value.get(field_name)
    if not isinstance(ref, str) or not REFERENCE.match(ref):
        raise SimError(400, "invalid_instrument", f"instrument.{field_name} is required", f"instrument.{field_name}")
    return kind, ref


def _int_param(value: str, param: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise SimError(400, "invalid_parameter", f"{param} must be an integer between {low} and {high}", param)
    return int(value)


def _date_param(value: str, param: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise SimError(400, "invalid_date", f"{param} must be YYYY-MM-DD", param) from exc
