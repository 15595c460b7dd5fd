"""A zero-latency, in-memory channel for unit tests and benchmarks (never for end-to-end or reliability tests).

It keeps per-reference state like a real acquirer (idempotent by reference) and honours the same deterministic
triggers as the channel simulator, by the last two digits of the amount in minor units:
51 declined (do_not_honour) · 52 declined (insufficient_funds) · 53 channel error, nothing charged ·
54 timeout before charging · 55 charged, then timed out · 56 declined (suspected_fraud).

Payouts are accepted once per reference and get their result (paid, or returned for an account whose last four digits
are 9951 account_closed, 9952 name_mismatch, 9953 account_frozen, as at the simulator) on the first inquiry. Tests
inject a payout fault for the calls that follow with `payout_fault`: "error" (not processed), "timeout" (no answer,
nothing accepted), "accepted_timeout" (accepted, no answer).

Disputes: tests put notices in the feed with `dispute_notice_add`; answers are kept once per dispute (`answers`), and
`dispute_fault` injects "error", "timeout" (nothing kept) or "accepted_timeout" (kept, no answer) for the calls that
follow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date

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

TRIGGER_DECLINE = 51
TRIGGER_FAIL = 53
TRIGGER_TIMEOUT_BEFORE_CHARGE = 54
TRIGGER_CHARGED_THEN_TIMEOUT = 55
DECLINES = {51: "do_not_honour", 52: "insufficient_funds", 56: "suspected_fraud"}
PAYOUT_RETURNS = {"9951": "account_closed", "9952": "name_mismatch", "9953": "account_frozen"}


@dataclass
class _Charge:
    channel: str
    reference: str
    amount: int
    currency: str
    state: RemoteState
    captured: int = 0
    refunded: int = 0


@dataclass
class _Payout:
    request: PayoutRequest
    state: PayoutState
    return_reason: str


class InProcessConnector:
    name = "inprocess"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._charges: dict[str, _Charge] = {}
        self._refunds: dict[str, int] = {}
        self.down_channels: set[str] = set()
        self.inquiry_down = False
        self.reversal_down = False
        self.calls: list[tuple[str, str]] = []
        self.instruments: dict[str, tuple[str, str]] = {}  # reference → (instrument kind, source) as authorised
        self.accounts: dict[str, int] = {}  # account id → balance, for balance inquiries
        self._payouts: dict[str, _Payout] = {}
        self.payout_fault: str | None = None
        # (channel, day) → (text, format) the statement call answers with; absent: not ready (a late file).
        self.statements: dict[tuple[str, date], tuple[str, str]] = {}
        self.notices: list[tuple[str, DisputeNotice]] = []  # (channel, notice), position = index + 1
        self.answers: dict[str, DisputeAnswer] = {}  # the channel's dispute reference → the answer it holds
        self.dispute_fault: str | None = None

    def clear(self) -> None:
        with self._lock:
            self._charges.clear()
            self._refunds.clear()
            self.down_channels.clear()
            self.inquiry_down = False
            self.reversal_down = False
            self.calls.clear()
            self.instruments.clear()
            self.accounts.clear()
            self._payouts.clear()
            self.payout_fault = None
            self.statements.clear()
            self.notices.clear()
            self.answers.clear()
            self.dispute_fault = None

    def charge_count(self, reference_prefix: str = "") -> int:
        """Charges still standing (authorised or captured) — what a double charge would show up in."""
        with self._lock:
            return sum(
                1
                for charge in self._charges.values()
                if charge.reference.startswith(reference_prefix)
                and charge.state in (RemoteState.AUTHORIZED, RemoteState.CAPTURED, RemoteState.REFUNDED)
            )

    def authorize(self, request: AuthorizeRequest) -> ChannelResponse:
        trigger = request.amount % 100
        self.calls.append(("authorize", request.reference))
        self.instruments[request.reference] = (request.instrument, request.source_token)
        if request.channel in self.down_channels:
            return ChannelResponse(Outcome.FAILED, code="channel_unavailable")
        with self._lock:
            existing = self._charges.get(request.reference)
            if existing is not None:
                return ChannelResponse(Outcome.APPROVED, existing.state, channel_reference=f"ip-{request.reference}")
            if trigger in DECLINES:
                return ChannelResponse(Outcome.DECLINED, RemoteState.DECLINED, code=DECLINES[trigger])
            if trigger == TRIGGER_FAIL:
                return ChannelResponse(Outcome.FAILED, code="channel_error", message="not processed")
            if trigger == TRIGGER_TIMEOUT_BEFORE_CHARGE:
                return ChannelResponse(Outcome.UNKNOWN, code="timeout")
            state = RemoteState.CAPTURED if request.capture else RemoteState.AUTHORIZED
            charge = _Charge(request.channel, request.reference, request.amount, request.currency, state)
            if request.capture:
                charge.captured = request.amount
            self._charges[request.reference] = charge
            if trigger == TRIGGER_CHARGED_THEN_TIMEOUT:
                return ChannelResponse(Outcome.UNKNOWN, code="timeout")
            return ChannelResponse(Outcome.APPROVED, state, channel_reference=f"ip-{request.reference}")

    def capture(self, request: CaptureRequest) -> ChannelResponse:
        self.calls.append(("capture", request.reference))
        with self._lock:
            charge = self._charges.get(request.reference)
            if charge is None or charge.state not in (RemoteState.AUTHORIZED, RemoteState.CAPTURED):
                return ChannelResponse(Outcome.DECLINED, code="not_capturable")
            if charge.state == RemoteState.CAPTURED:
                return ChannelResponse(Outcome.APPROVED, charge.state)
            if request.amount > charge.amount:
                return ChannelResponse(Outcome.DECLINED, code="amount_too_large")
            charge.state, charge.captured = RemoteState.CAPTURED, request.amount
            return ChannelResponse(Outcome.APPROVED, charge.state)

    def void(self, request: ReferenceRequest) -> ChannelResponse:
        return self._release(request, RemoteState.VOIDED)

    def reverse(self, request: ReferenceRequest) -> ChannelResponse:
        if self.reversal_down:
            return ChannelResponse(Outcome.UNKNOWN, code="timeout")
        with self._lock:
            if request.reference not in self._charges:
                return ChannelResponse(Outcome.APPROVED, RemoteState.NOT_FOUND)
        return self._release(request, RemoteState.REVERSED)

    def _release(self, request: ReferenceRequest, state: RemoteState) -> ChannelResponse:
        with self._lock:
            charge = self._charges.get(request.reference)
            if charge is None:
                return ChannelResponse(Outcome.DECLINED, code="not_found")
            if charge.state in (RemoteState.VOIDED, RemoteState.REVERSED):
                return ChannelResponse(Outcome.APPROVED, charge.state)
            if charge.refunded:
                return ChannelResponse(Outcome.DECLINED, code="already_refunded")
            charge.state = state
            return ChannelResponse(Outcome.APPROVED, state)

    def refund(self, request: RefundRequest) -> ChannelResponse:
        self.calls.append(("refund", request.refund_reference))
        with self._lock:
            if request.refund_reference in self._refunds:
                return ChannelResponse(Outcome.APPROVED, RemoteState.REFUNDED)
            charge = self._charges.get(request.reference)
            if charge is None or charge.state not in (RemoteState.CAPTURED, RemoteState.REFUNDED):
                return ChannelResponse(Outcome.DECLINED, code="not_refundable")
            if request.amount % 100 == TRIGGER_DECLINE or charge.refunded + request.amount > charge.captured:
                return ChannelResponse(Outcome.DECLINED, code="refund_declined")
            charge.refunded += request.amount
            self._refunds[request.refund_reference] = request.amount
            if request.amount % 100 == TRIGGER_CHARGED_THEN_TIMEOUT:
                return ChannelResponse(Outcome.UNKNOWN, code="timeout")
            return ChannelResponse(Outcome.APPROVED, RemoteState.REFUNDED)

    def inquire(self, request: ReferenceRequest) -> Inquiry:
        if self.inquiry_down:
            return Inquiry(Outcome.UNKNOWN)
        with self._lock:
            charge = self._charges.get(request.reference)
            if charge is None:
                return Inquiry(Outcome.APPROVED, RemoteState.NOT_FOUND)
            return Inquiry(Outcome.APPROVED, charge.state, charge.amount, charge.captured, charge.refunded)

    def account_inquire(self, account_id: str) -> AccountBalance:
        """Balances set by tests in `accounts`; an account id in `down_channels` does not answer."""
        if account_id in self.down_channels:
            return AccountBalance(Outcome.UNKNOWN)
        balance = self.accounts.get(account_id)
        if balance is None:
            return AccountBalance(Outcome.DECLINED)
        return AccountBalance(Outcome.APPROVED, "CNY", balance, 0, balance)

    def refund_inquire(self, request: RefundRequest) -> Inquiry:
        with self._lock:
            amount = self._refunds.get(request.refund_reference)
        if amount is None:
            return Inquiry(Outcome.APPROVED, RemoteState.NOT_FOUND)
        return Inquiry(Outcome.APPROVED, RemoteState.REFUNDED, amount_refunded=amount)

    def charges_after(self, channel: str, position: int, *, limit: int = 1000) -> JournalPage:
        """The charges made after `position` (a charge's place is its order of making, from 1)."""
        with self._lock:
            made = list(self._charges.values())[position : position + limit]
            return JournalPage([c.reference for c in made if c.channel == channel], position + len(made))

    def payout(self, request: PayoutRequest) -> PayoutResult:
        self.calls.append(("payout", request.reference))
        if request.channel in self.down_channels or self.payout_fault == "error":
            return PayoutResult(Outcome.FAILED, code="channel_error")
        if self.payout_fault == "timeout":
            return PayoutResult(Outcome.UNKNOWN, code="timeout")
        with self._lock:
            existing = self._payouts.get(request.reference)
            if existing is not None:
                if existing.request != request:
                    return PayoutResult(Outcome.UNKNOWN, code="idempotency_mismatch")
                return self._payout_result(existing)
            made = _Payout(request, PayoutState.ACCEPTED, PAYOUT_RETURNS.get(request.account_last4, ""))
            self._payouts[request.reference] = made
        if self.payout_fault == "accepted_timeout":
            return PayoutResult(Outcome.UNKNOWN, code="timeout")
        return self._payout_result(made)

    def statement(self, channel: str, day: date) -> StatementFile:
        with self._lock:
            self.calls.append(("statement", f"{channel}/{day.isoformat()}"))
            found = self.statements.get((channel, day))
        if found is None:
            return StatementFile(Outcome.DECLINED, code="statement_not_ready")
        return StatementFile(Outcome.APPROVED, text=found[0], format=found[1])

    def payout_inquire(self, reference: str) -> PayoutResult:
        self.calls.append(("payout_inquire", reference))
        if self.inquiry_down:
            return PayoutResult(Outcome.UNKNOWN, code="inquiry_failed")
        with self._lock:
            made = self._payouts.get(reference)
            if made is None:
                return PayoutResult(Outcome.APPROVED, PayoutState.NOT_FOUND)
            if made.state == PayoutState.ACCEPTED:  # the result is in by the time anyone asks
                made.state = PayoutState.RETURNED if made.return_reason else PayoutState.PAID
            return self._payout_result(made)

    def dispute_notice_add(self, channel: str, **fields: object) -> DisputeNotice:
        """Tests: the channel announces a dispute (`type` opened by default) on our payment reference."""
        with self._lock:
            values: dict[str, object] = {"type": "opened", "reason_code": "", "outcome": "", **fields}
            notice = DisputeNotice(position=len(self.notices) + 1, **values)  # type: ignore[arg-type]
            self.notices.append((channel, notice))
            return notice

    def dispute_notices(self, channel: str, position: int, *, limit: int = 500) -> DisputeFeed:
        with self._lock:
            self.calls.append(("dispute_notices", channel))
            if channel in self.down_channels:
                raise ConnectionError(f"dispute feed of {channel} unavailable")
            after = [notice for made_on, notice in self.notices[position:] if made_on == channel]
            page = after[:limit]
            return DisputeFeed(page, page[-1].position if page else position, has_more=len(after) > limit)

    def dispute_respond(self, answer: DisputeAnswer) -> DisputeAnswerResult:
        with self._lock:
            self.calls.append(("dispute_respond", answer.reference))
            if answer.channel in self.down_channels or self.dispute_fault == "error":
                return DisputeAnswerResult(Outcome.FAILED, code="channel_error")
            if self.dispute_fault == "timeout":
                return DisputeAnswerResult(Outcome.UNKNOWN, code="timeout")
            held = self.answers.get(answer.dispute_reference)
            if held is not None and held != answer:
                return DisputeAnswerResult(Outcome.DECLINED, code="idempotency_mismatch")
            self.answers[answer.dispute_reference] = answer
            if self.dispute_fault == "accepted_timeout":
                return DisputeAnswerResult(Outcome.UNKNOWN, code="timeout")
            return DisputeAnswerResult(Outcome.APPROVED)

    def payouts_made(self, reference_prefix: str = "") -> list[tuple[str, int, str]]:
        """(reference, amount, state) of every payout accepted under references with this prefix: what paying a
        batch twice would show up in."""
        with self._lock:
            return [
                (reference, made.request.amount, made.state.value)
                for reference, made in self._payouts.items()
                if reference.startswith(reference_prefix)
            ]

    @staticmethod
    def _payout_result(made: _Payout) -> PayoutResult:
        reason = made.return_reason if made.state == PayoutState.RETURNED else ""
        return PayoutResult(
            Outcome.APPROVED, made.state, channel_reference=f"ip-{made.request.reference}", return_reason=reason
        )
