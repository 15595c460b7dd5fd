"""The HTTP face: routing, signatures, JSON in and out, simulated hangs."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import signing, statement
from .engine import Call, Outcome, SimError, Simulator

MAX_BODY = 1 << 20
Handler = Callable[["Request"], Outcome]


class Request:
    def __init__(self, sim: Simulator, params: dict[str, str], query: dict[str, str], body: dict[str, Any], call: Call):
        self.sim = sim
        self.params = params
        self.query = query
        self.body = body
        self.call = call


def _statement(req: Request) -> Outcome:
    """The channel's statement in its layout (or `?format=`), unless its file is late (404 `statement_not_ready`)."""
    channel = req.sim.channel(req.params["channel"])
    try:
        day = date.fromisoformat(req.params["date"])
    except ValueError as exc:
        raise SimError(400, "invalid_date", "the date must be YYYY-MM-DD", "date") from exc
    fmt = req.query.get("format") or None
    if fmt is not None and fmt not in statement.STATEMENT_FORMATS:
        known = ", ".join(statement.STATEMENT_FORMATS)
        raise SimError(400, "invalid_format", f"format must be one of {known}", "format")
    now = req.sim.now()
    stored = statement.load_faults(req.sim.store, channel.id, day.isoformat())
    faults = stored[0] if stored else None
    if faults is not None and faults.late(now):
        raise SimError(
            404,
            "statement_not_ready",
            f"the statement of {channel.id} for {day} is not ready yet",
            extra={"ready_at": faults.late_until},
        )
    made = statement.build(req.sim.store, channel, day, now, format=fmt, faults=faults)
    return Outcome(
        200,
        {},
        text=made.text,
        content_type=statement.CONTENT_TYPES[made.format],
        headers={"X-Statement-Format": made.format},
    )


def _set_statement_faults(req: Request) -> Outcome:
    faults = statement.parse_faults(req.body)
    req.sim.channel(faults.channel)
    statement.save_faults(req.sim.store, faults)
    return Outcome(200, faults.as_json())


def _statement_faults(req: Request) -> Outcome:
    """The stored faults (filtered by `channel` and `date`), each with what it does to today's journal (`applied`)."""
    day = req.query.get("date") or None
    if day is not None:
        try:
            day = date.fromisoformat(day).isoformat()
        except ValueError as exc:
            raise SimError(400, "invalid_date", "the date must be YYYY-MM-DD", "date") from exc
    data = []
    now = req.sim.now()
    for faults in statement.load_faults(req.sim.store, req.query.get("channel") or None, day):
        day_of = date.fromisoformat(str(faults.date))
        made = statement.build(req.sim.store, req.sim.channel(faults.channel), day_of, now, faults=faults)
        data.append({**faults.as_json(), "applied": made.applied})
    return Outcome(200, {"data": data})


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("POST", re.compile(r"^/v1/payments/authorise$"), lambda r: r.sim.authorise(r.body, r.call)),
    ("POST", re.compile(r"^/v1/payments/capture$"), lambda r: r.sim.capture(r.body, r.call)),
    ("POST", re.compile(r"^/v1/payments/void$"), lambda r: r.sim.void(r.body, r.call)),
    ("POST", re.compile(r"^/v1/payments/refund$"), lambda r: r.sim.refund(r.body, r.call)),
    ("POST", re.compile(r"^/v1/payments/reverse$"), lambda r: r.sim.reverse(r.body, r.call)),
    (
        "GET",
        re.compile(r"^/v1/payments/(?P<channel>[^/]+)/(?P<reference>[^/]+)$"),
        lambda r: r.sim.payment_status(r.params["channel"], r.params["reference"], r.call),
    ),
    (
        "GET",
        re.compile(r"^/v1/accounts/(?P<account>[^/]+)$"),
        lambda r: r.sim.account_inquiry(r.params["account"], r.call),
    ),
    (
        "POST",
        re.compile(r"^/v1/accounts/(?P<account>[^/]+)/holds$"),
        lambda r: r.sim.hold(r.params["account"], r.body, r.call),
    ),
    (
        "GET",
        re.compile(r"^/v1/accounts/(?P<account>[^/]+)/holds/(?P<reference>[^/]+)$"),
        lambda r: r.sim.hold_status(r.params["account"], r.params["reference"], r.call),
    ),
    (
        "POST",
        re.compile(r"^/v1/holds/(?P<hold>[^/]+)/capture$"),
        lambda r: r.sim.hold_capture(r.params["hold"], r.body, r.call),
    ),
    (
        "POST",
        re.compile(r"^/v1/holds/(?P<hold>[^/]+)/release$"),
        lambda r: r.sim.hold_release(r.params["hold"], r.call),
    ),
    ("POST", re.compile(r"^/v1/payouts$"), lambda r: r.sim.payout(r.body, r.call)),
    (
        "GET",
        re.compile(r"^/v1/payouts/(?P<reference>[^/]+)$"),
        lambda r: r.sim.payout_status(r.params["reference"], r.call),
    ),
    ("POST", re.compile(r"^/v1/clearing/instructions$"), lambda r: r.sim.clearing_instruct(r.body, r.call)),
    (
        "GET",
        re.compile(r"^/v1/clearing/instructions/(?P<reference>[^/]+)$"),
        lambda r: r.sim.clearing_instruction_status(r.params["reference"], r.call),
    ),
    ("POST", re.compile(r"^/v1/otp/start$"), lambda r: r.sim.otp_start(r.body, r.call)),
    ("POST", re.compile(r"^/v1/otp/verify$"), lambda r: r.sim.otp_verify(r.body, r.call)),
    ("GET", re.compile(r"^/v1/statements/(?P<channel>[^/]+)/(?P<date>[^/]+)$"), _statement),
    ("POST", re.compile(r"^/v1/admin/statement-faults$"), _set_statement_faults),
    ("GET", re.compile(r"^/v1/admin/statement-faults$"), _statement_faults),
    ("POST", re.compile(r"^/v1/admin/disputes$"), lambda r: r.sim.dispute_open(r.body, r.call)),
    (
        "POST",
        re.compile(r"^/v1/admin/disputes/(?P<dispute>[^/]+)/decision$"),
        lambda r: r.sim.dispute_decide(r.params["dispute"], r.body, r.call),
    ),
    ("GET", re.compile(r"^/v1/disputes$"), lambda r: r.sim.dispute_notices(r.query)),
    (
        "GET",
        re.compile(r"^/v1/disputes/(?P<dispute>[^/]+)$"),
        lambda r: r.sim.dispute_status(r.params["dispute"], r.call),
    ),
    (
        "POST",
        re.compile(r"^/v1/disputes/(?P<dispute>[^/]+)/responses$"),
        lambda r: r.sim.dispute_respond(r.params["dispute"], r.body, r.call),
    ),
    ("GET", re.compile(r"^/journal$"), lambda r: r.sim.journal(r.query)),
    ("GET", re.compile(r"^/admin/channels$"), lambda r: r.sim.list_channels()),
    ("GET", re.compile(r"^/admin/channels/(?P<channel>[^/]+)$"), lambda r: r.sim.get_channel(r.params["channel"])),
    (
        "PUT",
        re.compile(r"^/admin/channels/(?P<channel>[^/]+)$"),
        lambda r: r.sim.put_channel(r.params["channel"], r.body),
    ),
    (
        "PATCH",
        re.compile(r"^/admin/channels/(?P<channel>[^/]+)/faults$"),
        lambda r: r.sim.patch_faults(r.params["channel"], r.body),
    ),
    ("POST", re.compile(r"^/sandbox/reset$"), lambda r: r.sim.reset()),
    ("GET", re.compile(r"^/sandbox/clock$"), lambda r: r.sim.clock()),
    ("POST", re.compile(r"^/sandbox/clock$"), lambda r: r.sim.set_clock(r.body)),
    ("POST", re.compile(r"^/sandbox/accounts$"), lambda r: r.sim.open_account(r.body, r.call)),
    ("GET", re.compile(r"^/sandbox/otp/(?P<reference>[^/]+)$"), lambda r: r.sim.otp_peek(r.params["reference"])),
]


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator, keys: dict[str, str], quiet: bool = True) -> None:
        super().__init__(address, SimulatorHandler)
        self.sim = sim
        self.keys = keys
        self.quiet = quiet


class SimulatorHandler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle would hold the second for an ACK
    server_version = "MengkaChannelSimulator/1"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _handle(self, method: str) -> None:
        hang_ms = 0
        try:
            outcome = self._dispatch(method)
            hang_ms = outcome.hang_ms
        except SimError as error:
            outcome = Outcome(error.status, error.body())
        except Exception:  # a bug must still answer JSON and keep the server up
            import traceback

            traceback.print_exc()
            outcome = Outcome(500, SimError(500, "internal_error", "the simulator failed").body())
        if hang_ms:
            time.sleep(hang_ms / 1000)
        self._send(outcome)

    def _dispatch(self, method: str) -> Outcome:
        target = self.path
        length = self.headers.get("Content-Length")
        if length is not None and (not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY):
            self.close_connection = True
            raise SimError(400, "invalid_body", "Content-Length is missing or too large")
        raw = self.rfile.read(int(length)) if length else b""
        split = urlsplit(target)
        if split.path == "/healthz" and method == "GET":
            return Outcome(200, {"status": "ok"})
        refusal = signing.verify(
            self.server.keys,
            self.headers.get(signing.KEY_ID_HEADER),
            self.headers.get(signing.TIMESTAMP_HEADER),
            self.headers.get(signing.SIGNATURE_HEADER),
            method,
            target,
            raw,
        )
        if refusal is not None:
            raise SimError(401, refusal, "the request signature is missing, stale or wrong")
        body: dict[str, Any] = {}
        if raw:
            try:
                parsed = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SimError(400, "invalid_json", "the body is not JSON") from exc
            if not isinstance(parsed, dict):
                raise SimError(400, "invalid_json", "the body must be a JSON object")
            body = parsed
        request_id = body.get("request_id", self.headers.get("X-Request-Id"))
        if request_id is not None and (not isinstance(request_id, str) or not 0 < len(request_id) <= 128):
            raise SimError(400, "invalid_request_id", "request_id must be a string of 1-128 characters", "request_id")
        call = Call(key_id=self.headers.get(signing.KEY_ID_HEADER), request_id=request_id)
        query = dict(parse_qsl(split.query))
        allowed = []
        for route_method, pattern, handler in ROUTES:
            match = pattern.match(split.path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            params = {name: unquote(value) for name, value in match.groupdict().items()}
            return handler(Request(self.server.sim, params, query, body, call))
        if allowed:
            raise SimError(405, "method_not_allowed", f"use {', '.join(allowed)}")
        raise SimError(404, "no_such_endpoint", f"no endpoint {split.path}")

    def _send(self, outcome: Outcome) -> None:
        if outcome.text is not None:
            payload = outcome.text.encode()
            content_type = outcome.content_type or "text/csv; charset=utf-8"
        else:
            payload = json.dumps(outcome.body, ensure_ascii=False).encode()
            content_type = "application/json"
        try:
            self.send_response(outcome.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (outcome.headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The caller gave up (a simulated timeout did its job); what happened is in the journal already.
            self.close_connection = True
