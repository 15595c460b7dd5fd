"""The connector interface: what Mengka asks of a channel, and what it hears back. Data crosses it as dataclasses.

Outcomes are explicit about certainty: `APPROVED` and `DECLINED` are final answers; `FAILED` means the channel said
it did not process the request (nothing charged); `UNKNOWN` means we do not know (timeout, broken connection, a 5xx
after sending) — it must be resolved by inquiry or reversal before anything else happens.

Payouts (a settlement paid to a merchant's account by the sponsor's licensed channel) are idempotent at the channel by
our reference: sending the same reference again returns the payout it made, never a second one.

Disputes come the other way: a channel's feed of notices (opened, answered, decided) is read from a position, and the
merchant's answer goes back once per dispute, idempotent by our reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    UNKNOWN = "unknown"


class RemoteState(StrEnum):
    """What the channel says a payment reference is, on inquiry."""

    NOT_FOUND = "not_found"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"
    VOIDED = "voided"
    REVERSED = "reversed"
    REFUNDED = "refunded"


@dataclass(frozen=True)
class AuthorizeRequest:
    channel: str
    reference: str
    amount: int
    currency: str
    method: str
    source_token: str
    capture: bool
    merchant_code: str
    description: str = ""
    instrument: str = ""  # card (source_token is a card token), code (a payment code) or account; "" = by method


@dataclass(frozen=True)
class CaptureRequest:
    channel: str
    reference: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ReferenceRequest:
    """Void, reverse (冲正) and inquiry name the original payment reference only."""

    channel: str
    reference: str


@dataclass(frozen=True)
class RefundRequest:
    channel: str
    reference: str
    refund_reference: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ChannelResponse:
    outcome: Outcome
    state: RemoteState | None = None
    channel_reference: str = ""
    code: str = ""
    message: str = ""
    latency_ms: int = 0


@dataclass(frozen=True)
class Inquiry:
    outcome: Outcome  # APPROVED when the channel answered; UNKNOWN when the inquiry itself failed
    state: RemoteState = RemoteState.NOT_FOUND
    amount_authorized: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0
    channel_reference: str = ""
    latency_ms: int = 0


class PayoutState(StrEnum):
    """What the channel says of a payout reference: accepted (the result is not in yet), paid or returned."""

    NOT_FOUND = "not_found"
    ACCEPTED = "accepted"
    PAID = "paid"
    RETURNED = "returned"


@dataclass(frozen=True)
class PayoutRequest:
    """A payout to the merchant's settlement account, named by its last four digits and the holder's name (or an
    opaque token the channel issued): never the full account number."""

    channel: str
    reference: str
    amount: int
    currency: str
    account_last4: str
    account_name: str = ""
    account_token: str = ""


@dataclass(frozen=True)
class PayoutResult:
    """APPROVED: the channel answered, `state` is the payout's (NOT_FOUND on an inquiry: nothing was accepted under
    the reference); DECLINED: the channel refused the instruction for good (`code`); FAILED: it did not process it,
    nothing was accepted; UNKNOWN: no answer — inquire."""

    outcome: Outcome
    state: PayoutState | None = None
    channel_reference: str = ""
    return_reason: str = ""
    code: str = ""
    latency_ms: int = 0


@dataclass(frozen=True)
class JournalPage:
    """The references of the charges a channel's journal records after a position, and the position to read on from
    (for the orphan sweep, which keeps its place in each channel's journal)."""

    references: list[str]
    position: int


@dataclass(frozen=True)
class AccountBalance:
    """A balance the channel keeps (bank account, wallet, prepaid, digital RMB): available = balance − held."""

    outcome: Outcome  # APPROVED: the figures are the channel's; DECLINED: no such account; UNKNOWN: no answer
    currency: str = ""
    balance: int = 0
    held: int = 0
    available: int = 0


@dataclass(frozen=True)
class StatementFile:
    """A channel's statement for a business date. APPROVED: `text` in layout `format`; DECLINED with code
    `statement_not_ready`: the file is not there yet (ask again later); UNKNOWN: no answer."""

    outcome: Outcome
    text: str = ""
    format: str = ""
    code: str = ""


@dataclass(frozen=True)
class DisputeNotice:
    """One notice of a channel's dispute feed: it was opened, answered, or decided (`outcome` won or lost). It names
    the channel's dispute (`dispute_reference`) and our payment reference (the attempt's) it disputes."""

    position: int
    type: str  # opened, answered, decided
    dispute_reference: str
    payment_reference: str
    kind: str  # retrieval, chargeback, error_adjustment
    amount: int
    currency: str
    reason_code: str = ""
    outcome: str = ""  # won or lost once decided
    at: datetime | None = None


@dataclass(frozen=True)
class DisputeFeed:
    """The notices after a position, and the position to read on from."""

    notices: list[DisputeNotice]
    position: int
    has_more: bool = False


@dataclass(frozen=True)
class DisputeAnswerFile:
    """What the channel is told of an evidence file: its name, type, size and SHA-256, not its bytes."""

    name: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DisputeAnswer:
    """The merchant's answer, sent once under `reference` (our dispute's id): sending it again is a replay."""

    channel: str
    dispute_reference: str
    reference: str
    text: str
    files: tuple[DisputeAnswerFile, ...] = ()


@dataclass(frozen=True)
class DisputeAnswerResult:
    """APPROVED: the channel holds the answer; FAILED or DECLINED: it did not take it (`code`); UNKNOWN: no answer
    came — the answer may have arrived, so it is sent again under the same reference, never assumed."""

    outcome: Outcome
    code: str = ""


class Connector(Protocol):
    name: str

    def authorize(self, request: AuthorizeRequest) -> ChannelResponse: ...

    def capture(self, request: CaptureRequest) -> ChannelResponse: ...

    def void(self, request: ReferenceRequest) -> ChannelResponse: ...

    def reverse(self, request: ReferenceRequest) -> ChannelResponse: ...

    def refund(self, request: RefundRequest) -> ChannelResponse: ...

    def inquire(self, request: ReferenceRequest) -> Inquiry: ...

    def refund_inquire(self, request: RefundRequest) -> Inquiry: ...

    def charges_after(self, channel: str, position: int, *, limit: int = 1000) -> JournalPage: ...

    def account_inquire(self, account_id: str) -> AccountBalance: ...

    def payout(self, request: PayoutRequest) -> PayoutResult: ...

    def payout_inquire(self, reference: str) -> PayoutResult: ...

    def statement(self, channel: str, day: date) -> StatementFile: ...

    def dispute_notices(self, channel: str, position: int, *, limit: int = 500) -> DisputeFeed: ...

    def dispute_respond(self, answer: DisputeAnswer) -> DisputeAnswerResult: ...
