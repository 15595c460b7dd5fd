"""A payment's attempts at its channels: opening one, asking the channel, recording what it said.

An attempt is committed before its channel is called and its outcome after, so a crash between the two leaves it
`pending` for `attempts_resolve`. A timeout is never a decline: it is settled by inquiry, then by reversal (冲正).

Whoever acts on an attempt claims it first (`claimed_until`): the request that opens it, a capture or a
cancellation, or the resolver. Nobody else acts on it until the claim lapses, which it does only for a process that
died holding it; and an outcome is recorded only over the state it was read in (`attempt_record(was=...)`), so a
process whose claim lapsed while it waited on the channel cannot overwrite what the resolver found meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..connectors import get_connector
from ..connectors.base import AuthorizeRequest, ChannelResponse, Inquiry, Outcome, ReferenceRequest, RemoteState
from ..models import Channel, PaymentAttempt, PaymentIntent
from .common import UNRESOLVED, AttemptStatus

logger = logging.getLogger("payments.services")

OUTCOME_FIELDS = ("status", "channel_reference", "error_code", "error_message", "resolved_at", "latency_ms")
# Longer than a request can spend on one attempt: its call, the inquiry and the reversal, each within its timeout.
CLAIM = timedelta(seconds=getattr(settings, "PAYMENTS_ATTEMPT_CLAIM_SECONDS", 120))


def attempt_reference(intent: PaymentIntent, sequence: int) -> str:
    return f"{intent.public_id}-{sequence}"


def attempt_open(intent: PaymentIntent, channel: Channel, *, sequence: int) -> PaymentAttempt:
    """A new `pending` attempt (in the caller's transaction, committed before the channel is called). A confirmation
    starts from no attempts, so `sequence` is the try."""
    return PaymentAttempt.objects.create(
        intent=intent,
        sequence=sequence,
        channel=channel,
        reference=attempt_reference(intent, sequence),
        intent_created_at=intent.created_at,  # the month its partition is cut on: the intent's, always
        amount=intent.amount,
        currency=intent.currency,
        claimed_until=timezone.now() + CLAIM,  # the opening request's, until it records the outcome
    )


def attempt_claim(attempt: PaymentAttempt) -> bool:
    """Claims the attempt for the caller, unless another process holds a claim that has not lapsed."""
    now = timezone.now()
    claimed = (
        PaymentAttempt.objects.one(attempt)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + CLAIM)
    )
    return bool(claimed)


def authorize(intent: PaymentIntent, attempt: PaymentAttempt) -> ChannelResponse:
    """Asks the attempt's channel to authorise (or, for an automatic capture, to charge); outside any transaction."""
    channel = attempt.channel
    connector = get_connector(channel.connector)
    source_token, instrument = _instrument(intent)
    started = time.monotonic()
    try:
        response = connector.authorize(
            AuthorizeRequest(
                channel=channel.remote_id or channel.code,
                reference=attempt.reference,
                amount=attempt.amount,
                currency=attempt.currency,
                method=intent.method,
                source_token=source_token,
                instrument=instrument,
                capture=intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC and not intent.risk_review,
                merchant_code=intent.merchant.code,
                description=intent.description,
            )
        )
    except Exception:
        logger.exception("authorize raised for attempt %s", attempt.reference)
        response = ChannelResponse(Outcome.UNKNOWN, code="connector_exception")
    attempt.latency_ms = int((time.monotonic() - started) * 1000)  # saved with the outcome
    return response


def _instrument(intent: PaymentIntent) -> tuple[str, str]:
    """What the channel charges: the linked account (a hold), the payment code, or the card token."""
    if intent.linked_account is not None:
        return intent.linked_account.reference, "account"
    if intent.payment_code is not None:
        return intent.payment_code.code, "code"
    return (intent.card.token if intent.card else ""), "card"


def authorize_outcome(attempt: PaymentAttempt, response: ChannelResponse) -> str:
    """The attempt's status for what the channel said, set on the object (the caller writes it: `attempt_record`);
    an UNKNOWN is settled at once by inquiry, then reversal (channel calls, so outside any transaction)."""
    if response.outcome == Outcome.APPROVED:
        status = AttemptStatus.CAPTURED if response.state == RemoteState.CAPTURED else AttemptStatus.AUTHORIZED
        attempt_set(attempt, status, response.channel_reference, "", "")
    elif response.outcome == Outcome.DECLINED:
        attempt_set(attempt, AttemptStatus.DECLINED, "", response.code, response.message)
    elif response.outcome == Outcome.FAILED:
        attempt_set(attempt, AttemptStatus.FAILED, "", response.code, response.message)
    else:
        attempt_set(attempt, AttemptStatus.UNKNOWN, "", response.code or "timeout", response.message)
        attempt_settle_unknown(attempt)
    return attempt.status


def attempt_set(attempt: PaymentAttempt, status: str, channel_reference: str, code: str, message: str) -> None:
    attempt.status = status
    attempt.channel_reference = channel_reference or attempt.channel_reference
    attempt.error_code, attempt.error_message = code[:64], message[:255]
    attempt.resolved_at = timezone.now() if status not in UNRESOLVED else None


def attempt_record(attempt: PaymentAttempt, *, was: Iterable[str]) -> bool:
    """Writes the attempt's outcome as set on the object, and releases the caller's claim — only over the state the
    caller read it in (`was`). False, writing nothing, when someone else recorded another state meanwhile."""
    fields = {name: getattr(attempt, name) for name in OUTCOME_FIELDS}
    return bool(PaymentAttempt.objects.one(attempt).filter(status__in=list(was)).update(claimed_until=None, **fields))


def attempt_settle_unknown(attempt: PaymentAttempt) -> None:
    """Inquiry first; if the channel cannot say, reverse (冲正) so that nothing stays charged unknowingly. Sets the
    outcome on the object; the caller writes it."""
    connector = get_connector(attempt.channel.connector)
    request = ReferenceRequest(channel=attempt.channel.remote_id or attempt.channel.code, reference=attempt.reference)
    try:
        inquiry = connector.inquire(request)
    except Exception:
        logger.exception("inquiry raised for attempt %s", attempt.reference)
        inquiry = Inquiry(Outcome.UNKNOWN)
    if inquiry.outcome == Outcome.APPROVED:
        if inquiry.state == RemoteState.CAPTURED:
            attempt_set(attempt, AttemptStatus.CAPTURED, inquiry.channel_reference, "", "")
            return
        if inquiry.state == RemoteState.AUTHORIZED:
            attempt_set(attempt, AttemptStatus.AUTHORIZED, inquiry.channel_reference, "", "")
            return
        if inquiry.state in (RemoteState.NOT_FOUND, RemoteState.DECLINED, RemoteState.VOIDED, RemoteState.REVERSED):
            attempt_set(attempt, AttemptStatus.FAILED, "", attempt.error_code or "not_charged", "not charged")
            return
    try:
        reversal = connector.reverse(request)
    except Exception:
        logger.exception("reversal raised for attempt %s", attempt.reference)
        reversal = ChannelResponse(Outcome.UNKNOWN)
    if reversal.outcome == Outcome.APPROVED:
        attempt_set(attempt, AttemptStatus.REVERSED, "", attempt.error_code or "timeout", "reversed after timeout")
    else:
        attempt_set(attempt, AttemptStatus.UNKNOWN, "", attempt.error_code or "timeout", "awaiting resolution")


def capture_inquiry(attempt: PaymentAttempt) -> Inquiry:
    """What the channel holds of an attempt whose capture answer was lost (outcome UNKNOWN when it cannot say)."""
    channel = attempt.channel
    try:
        return get_connector(channel.connector).inquire(
            ReferenceRequest(channel.remote_id or channel.code, attempt.reference)
        )
    except Exception:
        logger.exception("inquiry raised for attempt %s", attempt.reference)
        return Inquiry(Outcome.UNKNOWN)
