"""The jobs that settle what a request left open: attempts whose outcome is unknown, payments stopped mid-flight,
refunds never answered, authorisations past their validity, and charges a channel holds that we do not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import audit_record
from core.errors import ChannelError, Conflict

from ..connectors import get_connector
from ..connectors.base import ChannelResponse, Inquiry, Outcome, ReferenceRequest, RefundRequest, RemoteState
from ..models import Channel, JournalCursor, PaymentAttempt, PaymentIntent, Refund, UnmatchedCharge
from ..windows import capture_window
from .attempts import attempt_claim, attempt_record, attempt_settle_unknown, capture_inquiry, logger
from .cancel import cancel, cancel_finish
from .capture import capture_finish, capture_not_made, payment_fail, payment_finish, restore_captured
from .common import CHARGED, CHARGED_STATES, UNRESOLVED, AttemptStatus, Status
from .refunds import refund_send


@dataclass
class ResolveReport:
    examined: int = 0
    charged: int = 0
    not_charged: int = 0
    still_unknown: int = 0


def attempts_resolve(*, older_than: timedelta = timedelta(seconds=30)) -> ResolveReport:
    """Settles what requests left open: attempts left pending or unknown (a crash, a timeout) and the payments
    waiting on them, payments left `processing` after their attempt's outcome was recorded (an error between the
    channel's answer and the payment's move), and refunds never answered. It acts on an attempt only once it holds
    its claim (`attempt_claim`): never on one a live request, capture or cancellation is still working on."""
    report = ResolveReport()
    cutoff = timezone.now() - older_than
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=timezone.now())
    stuck = PaymentAttempt.objects.filter(unclaimed, status__in=UNRESOLVED, created_at__lte=cutoff)
    stuck = stuck.select_related("channel")
    for attempt in stuck.iterator():
        if not attempt_claim(attempt):
            continue  # claimed since the query read it
        report.examined += 1
        attempt_settle_unknown(attempt)
        intent = _payment(attempt.intent_id)
        if attempt.status in CHARGED:
            report.charged += 1
            if intent.status == Status.PROCESSING:
                payment_finish(intent, attempt, captured=attempt.status == AttemptStatus.CAPTURED)
                continue
        elif attempt.status in UNRESOLVED:
            report.still_unknown += 1
        else:
            report.not_charged += 1
        attempt_record(attempt, was=UNRESOLVED)
    for intent in PaymentIntent.objects.filter(status=Status.PROCESSING, updated_at__lte=cutoff).select_related(
        "card__product", "card__bank", "merchant"
    ):
        _settle_processing(intent)
    # Refunds whose outcome is unknown, and those never sent (the request stopped between writing and sending): sent
    # again under the same refund reference, which the channel answers once.
    unsettled = Refund.objects.filter(status__in=[Refund.Status.PENDING, Refund.Status.UNKNOWN], created_at__lte=cutoff)
    for refund in unsettled.select_related("intent__merchant"):
        captured = (
            PaymentAttempt.objects.of(refund.intent)
            .filter(status=AttemptStatus.CAPTURED)
            .select_related("channel")
            .first()
        )
        if captured is None:
            continue
        refund_send(
            refund,
            captured.channel,
            RefundRequest(
                captured.channel.remote_id or captured.channel.code,
                captured.reference,
                refund.reference,
                refund.amount,
                refund.intent.currency,
            ),
        )
    return report


def _payment(pk: int) -> PaymentIntent:
    return PaymentIntent.objects.select_related("card__product", "card__bank", "channel", "merchant").get(pk=pk)


def _settle_processing(intent: PaymentIntent) -> None:
    """A payment still `processing` past the cutoff, whatever stopped it: finished from its charged attempt, or
    failed when no attempt charged and none is still open."""
    attempts = list(PaymentAttempt.objects.of(intent).select_related("channel"))
    if any(attempt.status in UNRESOLVED for attempt in attempts):
        return  # the first loop settles those (now, or once their claim lapses)
    charged = next((attempt for attempt in attempts if attempt.status in CHARGED), None)
    if charged is None:
        # Every attempt was declined or failed (or none was opened), and the step that fails the payment never ran.
        # Under the payment's row lock, which a request takes to open its next attempt: never while it opens one.
        with transaction.atomic():
            locked = PaymentIntent.objects.one(intent).select_for_update().filter(status=Status.PROCESSING).first()
            if locked is None or PaymentAttempt.objects.of(intent).filter(status__in=[*UNRESOLVED, *CHARGED]).exists():
                return
            declined = next((a for a in reversed(attempts) if a.status == AttemptStatus.DECLINED), None)
            if declined is not None:
                payment_fail(intent, declined.error_code or "card_declined", declined.error_message or "Declined.")
            else:
                payment_fail(intent, "not_charged", "The channel did not charge this payment.")
        return
    if not attempt_claim(charged):
        return  # a capture or cancellation is under way
    if intent.authorized_at is None:
        # Charged, the approval recorded on the attempt, and the step that moves the payment on never ran.
        payment_finish(intent, charged, captured=charged.status == AttemptStatus.CAPTURED, was=CHARGED)
        return
    # A capture or a cancellation stopped before its answer was recorded: what does the channel hold now?
    inquiry = capture_inquiry(charged)
    if inquiry.outcome != Outcome.APPROVED:
        attempt_record(charged, was=CHARGED)  # unchanged; the claim released for the next run
    elif inquiry.state == RemoteState.CAPTURED and charged.status != AttemptStatus.CAPTURED:
        capture_finish(intent, charged, inquiry.amount_captured or intent.amount)
    elif inquiry.state in (RemoteState.VOIDED, RemoteState.REVERSED):
        cancel_finish(intent, charged, "cancel_resolved")
    elif inquiry.state == RemoteState.CAPTURED:
        # Captured at once, and the cancellation's void was refused or never reached the channel.
        restore_captured(intent, charged)
    else:
        capture_not_made(intent, charged)


def authorizations_expire() -> int:
    """Voids authorisations past their validity, and cancels payments left unconfirmed past the capture window
    (PAYMENT_CAPTURE_DAYS after their creation); confirming or capturing them afterwards is refused."""
    expired = 0
    now = timezone.now()
    window_closed = now - capture_window()
    due = PaymentIntent.objects.filter(
        Q(status=Status.REQUIRES_CAPTURE, authorization_expires_at__lte=now)
        # Authorised before the expiry was held to the window, or never given one.
        | Q(status=Status.REQUIRES_CAPTURE, created_at__lte=window_closed)
        | Q(status=Status.REQUIRES_CONFIRMATION, created_at__lte=window_closed)
    ).select_related("channel", "merchant")
    for intent in due:
        unconfirmed = intent.status == Status.REQUIRES_CONFIRMATION
        reason = "capture_window_closed" if unconfirmed else "authorization_expired"
        try:
            cancel(intent, reason)
        except (Conflict, ChannelError):
            logger.warning("could not cancel expired payment %s; will retry", intent.public_id)
            continue
        audit_record(actor=None, action=f"payment.{reason}", obj=intent)
        expired += 1
    return expired


@dataclass
class SweepReport:
    examined: int = 0
    orphans_reversed: int = 0
    orphans_unresolved: int = 0


MATCHED = (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED, AttemptStatus.VOIDED)
SWEEP_JOURNAL_ROWS = 5_000  # journal rows one sweep of a channel reads at most; the next run carries on


def orphans_sweep(*, channel: Channel) -> SweepReport:
    """Finds charges the channel made that we do not account for (no attempt, or one we hold as not charged) and
    reverses them. Incremental: it reads the channel's journal on from where the last run stopped (`JournalCursor`),
    and asks the channel only about charges not matched by an attempt — the new ones, and those an earlier run left
    open (`UnmatchedCharge`: an attempt still unresolved, an inquiry or reversal that did not answer)."""
    report = SweepReport()
    connector = get_connector(channel.connector)
    remote = channel.remote_id or channel.code
    cursor, _ = JournalCursor.objects.get_or_create(channel=channel)
    page = connector.charges_after(remote, cursor.position, limit=SWEEP_JOURNAL_ROWS)
    waiting = list(UnmatchedCharge.objects.filter(channel=channel).values_list("reference", flat=True))
    candidates = list(dict.fromkeys([*page.references, *waiting]))
    ours = dict(PaymentAttempt.objects.filter(reference__in=candidates).values_list("reference", "status"))
    still_open: dict[str, str] = {}
    for reference in candidates:
        report.examined += 1
        status = ours.get(reference)
        if status in MATCHED:
            continue
        if status in UNRESOLVED:
            still_open[reference] = "attempt unresolved"  # the resolver settles it first
            continue
        request = ReferenceRequest(remote, reference)
        try:
            inquiry = connector.inquire(request)
        except Exception:
            logger.exception("inquiry raised for %s", reference)
            inquiry = Inquiry(Outcome.UNKNOWN)
        if inquiry.outcome != Outcome.APPROVED:
            still_open[reference] = "inquiry unanswered"
            continue
        if inquiry.state not in CHARGED_STATES:
            continue  # not (or no longer) charged
        try:
            response = connector.reverse(request)
        except Exception:
            logger.exception("reversal raised for %s", reference)
            response = ChannelResponse(Outcome.UNKNOWN)
        if response.outcome != Outcome.APPROVED:
            report.orphans_unresolved += 1
            still_open[reference] = "reversal unanswered"
            continue
        report.orphans_reversed += 1
        PaymentAttempt.objects.filter(reference=reference).update(status=AttemptStatus.REVERSED)
        audit_record(
            actor=None,
            action="payment.orphan_reversed",
            object_type="payments.channelcharge",
            object_id=reference,
            after={"channel": channel.code, "amount": inquiry.amount_authorized, "state": str(inquiry.state)},
        )
    with transaction.atomic():
        UnmatchedCharge.objects.filter(channel=channel).exclude(reference__in=list(still_open)).delete()
        for reference, reason in still_open.items():
            UnmatchedCharge.objects.update_or_create(channel=channel, reference=reference, defaults={"reason": reason})
        JournalCursor.objects.filter(pk=cursor.pk).update(position=page.position, swept_at=timezone.now())
    return report
