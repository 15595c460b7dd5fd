"""The jobs that settle what a request left open: attempts whose outcome is unknown, payments stopped mid-flight,
refunds never answered, authorisations past their validity, and charges a channel holds that we do not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from core.audit import audit_record
from core.errors import ChannelError, Conflict

from ..connectors import get_connector
from ..connectors.base import Outcome, ReferenceRequest, RefundRequest, RemoteState
from ..models import Channel, PaymentAttempt, PaymentIntent, Refund
from .attempts import attempt_record, attempt_settle_unknown, capture_inquiry, logger
from .cancel import cancel
from .capture import capture_finish, capture_not_made, payment_fail, payment_finish
from .common import CHARGED, CHARGED_STATES, UNRESOLVED, AttemptStatus, Status
from .refunds import refund_send


@dataclass
class ResolveReport:
    examined: int = 0
    charged: int = 0
    not_charged: int = 0
    still_unknown: int = 0


def attempts_resolve(*, older_than: timedelta = timedelta(seconds=30)) -> ResolveReport:
    """Settles attempts left pending or unknown (a crash, a timeout) and the payments waiting on them."""
    report = ResolveReport()
    cutoff = timezone.now() - older_than
    stuck = PaymentAttempt.objects.filter(status__in=UNRESOLVED, created_at__lte=cutoff).select_related("channel")
    for attempt in stuck.iterator():
        report.examined += 1
        attempt_settle_unknown(attempt)
        intent = PaymentIntent.objects.select_related("card__product", "card__bank", "channel", "merchant").get(
            pk=attempt.intent_id
        )
        if attempt.status in CHARGED:
            report.charged += 1
            if intent.status == Status.PROCESSING:
                payment_finish(intent, attempt, captured=attempt.status == AttemptStatus.CAPTURED)
            else:
                attempt_record(attempt)
        elif attempt.status in UNRESOLVED:
            report.still_unknown += 1
            attempt_record(attempt)
        else:
            report.not_charged += 1
            attempt_record(attempt)
            others_open = intent.attempts.filter(status__in=[*UNRESOLVED, *CHARGED]).exists()
            if intent.status == Status.PROCESSING and not others_open:
                payment_fail(intent, attempt.error_code or "not_charged", "The channel did not charge this payment.")
    # Confirms or captures interrupted mid-flight: the attempt is authorised but the payment is still processing.
    interrupted = PaymentIntent.objects.filter(status=Status.PROCESSING, updated_at__lte=cutoff).select_related(
        "card__product", "card__bank", "merchant"
    )
    for intent in interrupted:
        authorized = intent.attempts.filter(status__in=CHARGED).select_related("channel").first()
        if authorized is None:
            continue
        if intent.authorized_at is None:
            attempt_settle_unknown(authorized)
            if authorized.status in CHARGED:
                payment_finish(intent, authorized, captured=authorized.status == AttemptStatus.CAPTURED)
            else:
                attempt_record(authorized)
            continue
        inquiry = capture_inquiry(authorized)
        if inquiry.outcome != Outcome.APPROVED:
            continue
        if inquiry.state == RemoteState.CAPTURED:
            capture_finish(intent, authorized, inquiry.amount_captured or intent.amount)
        else:
            capture_not_made(intent)
    # Refunds whose outcome is unknown, and those never sent (the request stopped between writing and sending): sent
    # again under the same refund reference, which the channel answers once.
    unsettled = [Refund.Status.PENDING, Refund.Status.UNKNOWN]
    for refund in Refund.objects.filter(status__in=unsettled, created_at__lte=cutoff).select_related(
        "intent__merchant"
    ):
        captured = refund.intent.attempts.filter(status=AttemptStatus.CAPTURED).select_related("channel").first()
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


def authorizations_expire() -> int:
    """Voids authorisations past their validity; capturing them afterwards is refused."""
    expired = 0
    due = PaymentIntent.objects.filter(
        status=Status.REQUIRES_CAPTURE, authorization_expires_at__lte=timezone.now()
    ).select_related("channel", "merchant")
    for intent in due:
        try:
            cancel(intent, "authorization_expired")
        except (Conflict, ChannelError):
            logger.warning("could not void expired authorisation %s; will retry", intent.public_id)
            continue
        audit_record(actor=None, action="payment.authorization_expired", obj=intent)
        expired += 1
    return expired


@dataclass
class SweepReport:
    examined: int = 0
    orphans_reversed: int = 0
    orphans_unresolved: int = 0


def orphans_sweep(*, channel: Channel) -> SweepReport:
    """Finds charges the channel has and we do not (no attempt, or an attempt we hold as failed) and reverses them."""
    report = SweepReport()
    connector = get_connector(channel.connector)
    remote = connector.list_charges(channel.remote_id or channel.code)
    ours = dict(
        PaymentAttempt.objects.filter(reference__in=[charge.reference for charge in remote]).values_list(
            "reference", "status"
        )
    )
    live = {*CHARGED, AttemptStatus.VOIDED, *UNRESOLVED}
    for charge in remote:
        report.examined += 1
        if charge.state not in CHARGED_STATES:
            continue
        if ours.get(charge.reference) in live:
            continue
        response = connector.reverse(ReferenceRequest(channel.remote_id or channel.code, charge.reference))
        if response.outcome == Outcome.APPROVED:
            report.orphans_reversed += 1
            PaymentAttempt.objects.filter(reference=charge.reference).update(status=AttemptStatus.REVERSED)
            audit_record(
                actor=None,
                action="payment.orphan_reversed",
                object_type="payments.channelcharge",
                object_id=charge.reference,
                after={"channel": channel.code, "amount": charge.amount, "currency": charge.currency},
            )
        else:
            report.orphans_unresolved += 1
    return report
