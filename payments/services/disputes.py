"""Disputes (差错, 调单, 拒付): opened by a channel or an operator, answered by the merchant with evidence before a
deadline in working days, and closed won, lost, accepted or expired.

Every transition is a guarded UPDATE on the dispute's status inside its own transaction, audited, with its webhook
event (`dispute.created`, `dispute.updated`, `dispute.closed`) in the same transaction: of two answers at once, one
wins and the other is refused. Money (chargebacks and error adjustments only; a retrieval request carries none):

- opening reserves the amount on the payment (`amount_disputed`: no longer refundable) and, while the payment is on
  no settlement line yet, holds it out of settlement;
- won: the reservation and the hold are released;
- lost, accepted or expired: the amount is charged back (`amount_charged_back`), the payment's points earned and
  points paid with and its promotions go back by the refunds' cumulative rule (`refunds.reversal_apply`), and the
  merchant's next settlement takes a `dispute` line (settlement.py).

See docs/disputes.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.calendar import add_working_days, local_date, local_now
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.money import validate_minor_amount
from core.scoping import operator_scope
from merchants.models import Merchant

from .. import events
from ..connectors import get_connector
from ..connectors.base import (
    DisputeAnswer,
    DisputeAnswerFile,
    DisputeAnswerResult,
    DisputeFeed,
    DisputeNotice,
)
from ..connectors.base import Outcome as ChannelOutcome
from ..models import (
    Channel,
    Dispute,
    DisputeEvidence,
    DisputeFeedCursor,
    DisputeKind,
    PaymentAttempt,
    PaymentIntent,
)
from .common import Status, payment_save
from .refunds import reversal_apply
from .settlement import on_a_line

logger = logging.getLogger(__name__)

OUTCOMES = (Dispute.Status.WON, Dispute.Status.LOST)


# --- deadlines --------------------------------------------------------------------------------------------------------


def respond_by_for(kind: str, opened_at: dt.datetime) -> dt.date:
    """The last day to answer: DISPUTE_RESPOND_WORKING_DAYS[kind] working days after the opening day (Asia/Shanghai),
    on the PRC calendar (holidays skipped, 调休 working weekend days counted)."""
    days = settings.DISPUTE_RESPOND_WORKING_DAYS[kind]
    return add_working_days(local_date(opened_at), int(days))


def deadline_passed(dispute: Dispute, today: dt.date | None = None) -> bool:
    return (today or local_now().date()) > dispute.respond_by


# --- opening ----------------------------------------------------------------------------------------------------------


def dispute_open(
    *,
    payment: PaymentIntent,
    kind: str,
    amount: int | None = None,
    reason_code: str = "",
    opened_by: str = Dispute.OpenedBy.OPERATOR,
    actor: Any = None,
    channel_reference: str = "",
    opened_at: dt.datetime | None = None,
) -> Dispute:
    """Opens a dispute on a captured payment. A channel's notice names its `channel_reference`: the same notice again
    returns the dispute it opened, nothing written. An operator must be of the payment's acquirer or the merchant's
    sponsor bank."""
    if kind not in DisputeKind.values:
        raise ValidationFailed(_("Unknown dispute kind."), code="invalid_kind", param="kind")
    if opened_by == Dispute.OpenedBy.OPERATOR:
        _require_operator(actor, payment)
    channel_id = payment.channel_id
    if channel_reference and channel_id is not None:
        earlier = Dispute.objects.filter(channel_id=channel_id, channel_reference=channel_reference).first()
        if earlier is not None:
            return earlier
    carries_money = kind != DisputeKind.RETRIEVAL
    amount = (
        (payment.amount_captured - payment.amount_refund_reserved - payment.amount_disputed)
        if amount is None
        else amount
    )
    if carries_money:
        if amount <= 0:
            raise Conflict(_("Nothing of this payment is left to dispute."), code="dispute_exceeds_available")
        validate_minor_amount(amount, payment.currency)
    elif amount < 0:
        raise ValidationFailed(_("The amount cannot be negative."), code="invalid_amount", param="amount")
    opened_at = opened_at or timezone.now()
    with transaction.atomic():
        locked = PaymentIntent.objects.one(payment).select_for_update(of=("self",)).select_related("merchant").get()
        if locked.status != Status.SUCCEEDED or locked.amount_captured <= 0:
            raise Conflict(_("Only a captured payment can be disputed."), code="payment_unexpected_state")
        if carries_money:
            reserved = (
                PaymentIntent.objects.one(locked)
                .filter(
                    amount_disputed__lte=F("amount_captured") - F("amount_refund_reserved") - amount,
                )
                .update(amount_disputed=F("amount_disputed") + amount, updated_at=timezone.now())
            )
            if not reserved:
                raise ValidationFailed(
                    _("The dispute would exceed what is captured and neither refunded nor disputed already."),
                    code="dispute_exceeds_available",
                    param="amount",
                )
        settled = on_a_line(locked)
        dispute = Dispute.objects.create(
            payment=locked,
            payment_created_at=locked.created_at,
            merchant=locked.merchant,
            livemode=locked.livemode,
            channel_id=channel_id,
            kind=kind,
            reason_code=reason_code[:16],
            amount=amount,
            currency=locked.currency,
            opened_by=opened_by,
            opened_by_user=actor if opened_by == Dispute.OpenedBy.OPERATOR and getattr(actor, "pk", None) else None,
            channel_reference=channel_reference[:64],
            respond_by=respond_by_for(kind, opened_at),
            holds_settlement=carries_money and not settled,
            created_at=opened_at,
            updated_at=opened_at,
        )
        _audit(dispute, actor, "dispute.open", before=None)
        events.dispute_changed(dispute, "dispute.created")
    return dispute


# --- the merchant's answer ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceFile:
    """A file as checked: its bytes, a safe name and the type its content shows."""

    name: str
    content: bytes
    content_type: str


_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def sniff_type(head: bytes) -> str | None:
    """The type the file's first bytes show (PDF, PNG, JPEG), whatever its name says; None for anything else."""
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    return None


def safe_filename(name: str) -> str:
    """The file's name without any path, control or shell-special character, at most 80 characters: only ever shown
    and used as the last part of a private storage path."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^\w.\-]+", "_", name, flags=re.UNICODE).strip("._") or "file"
    stem, dot, extension = name.rpartition(".")
    if dot and len(extension) <= 8:
        return f"{stem[: 79 - len(extension)]}.{extension}"
    return name[:80]


def evidence_files_check(files: Sequence[UploadedFile], *, already: int = 0) -> list[EvidenceFile]:
    """Checks the uploads before anything is written: how many (with those `already` sent), each one's size, each
    one's type by its content. Refuses the whole lot on the first file that fails."""
    limit, most = settings.DISPUTE_EVIDENCE_MAX_BYTES, settings.DISPUTE_EVIDENCE_MAX_FILES
    if already + len(files) > most:
        raise ValidationFailed(
            _("At most %(most)d files per dispute.") % {"most": most}, code="too_many_files", param="files"
        )
    checked = []
    for upload in files:
        if (upload.size or 0) > limit:
            raise ValidationFailed(
                _("%(name)s is larger than %(limit)d bytes.")
                % {"name": safe_filename(upload.name or ""), "limit": limit},
                code="file_too_large",
                param="files",
            )
        content = upload.read(limit + 1)
        if len(content) > limit:
            raise ValidationFailed(
                _("%(name)s is larger than %(limit)d bytes.")
                % {"name": safe_filename(upload.name or ""), "limit": limit},
                code="file_too_large",
                param="files",
            )
        content_type = sniff_type(content[:16])
        if content_type is None:
            raise ValidationFailed(
                _("%(name)s is not a PDF, PNG or JPEG file.") % {"name": safe_filename(upload.name or "")},
                code="file_type_not_allowed",
                param="files",
            )
        checked.append(EvidenceFile(safe_filename(upload.name or "file"), content, content_type))
    return checked


def dispute_evidence_submit(
    *,
    merchant: Merchant,
    livemode: bool,
    dispute_id: str,
    text: str = "",
    files: Sequence[UploadedFile] = (),
    actor: Any = None,
) -> Dispute:
    """The merchant's answer, once: a text and files (PDF, PNG, JPEG by content, size and number limited), the
    dispute moved open → evidence_submitted, the answer queued for the channel. Refused on a closed dispute
    (`dispute_closed`), past the deadline (`deadline_passed`) or when an answer was submitted already
    (`evidence_already_submitted`): of two answers at once, one is taken."""
    dispute = dispute_get(merchant=merchant, livemode=livemode, dispute_id=dispute_id)
    _require_answerable(dispute)
    if dispute.status != Dispute.Status.OPEN:
        raise Conflict(_("Evidence was submitted for this dispute already."), code="evidence_already_submitted")
    if not text.strip() and not files:
        raise ValidationFailed(_("Send a text, files or both."), code="evidence_required", param="text")
    checked = evidence_files_check(files, already=_evidence_of(dispute).exclude(file="").count())
    label = getattr(actor, "audit_label", "") or getattr(actor, "username", "")
    now = timezone.now()
    with transaction.atomic():
        before = snapshot(dispute)
        moved = Dispute.objects.filter(
            pk=dispute.pk, status=Dispute.Status.OPEN, respond_by__gte=local_date(now)
        ).update(status=Dispute.Status.EVIDENCE_SUBMITTED, updated_at=now)
        if not moved:
            dispute.refresh_from_db()
            _require_answerable(dispute)
            raise Conflict(_("Evidence was submitted for this dispute already."), code="evidence_already_submitted")
        rows = []
        if text.strip():
            rows.append(
                DisputeEvidence(
                    dispute=dispute,
                    dispute_payment_created_at=dispute.payment_created_at,
                    text=text[:20000],
                    submitted_by=label[:150],
                    created_at=now,
                )
            )
        for item in checked:
            row = DisputeEvidence(
                dispute=dispute,
                dispute_payment_created_at=dispute.payment_created_at,
                filename=item.name,
                content_type=item.content_type,
                size=len(item.content),
                sha256=hashlib.sha256(item.content).hexdigest(),
                submitted_by=label[:150],
                created_at=now,
            )
            # Written to private storage inside the transaction: a failure before commit leaves an orphan file, never
            # a row without its file.
            row.file.save(item.name, ContentFile(item.content), save=False)
            rows.append(row)
        DisputeEvidence.objects.bulk_create(rows)
        dispute.refresh_from_db()
        _audit(dispute, actor, "dispute.evidence_submit", before=before)
        events.dispute_changed(dispute, "dispute.updated")
        _queue_answer(dispute)
    return dispute


def _evidence_of(dispute: Dispute) -> QuerySet[DisputeEvidence]:
    """The dispute's evidence, read in its month's partition."""
    return DisputeEvidence.objects.filter(dispute=dispute, dispute_payment_created_at=dispute.payment_created_at)


def _queue_answer(dispute: Dispute) -> None:
    from core.enqueue import enqueue_on_commit

    from ..tasks import dispute_answer_send

    enqueue_on_commit(
        dispute_answer_send, (dispute.pk,), otherwise="an operator sends it from the dispute queue (Send the answer)"
    )


def dispute_answer_send(dispute_id: int, *, actor: Any = None) -> Dispute:
    """Sends the merchant's answer to the channel (outside any transaction), then records it as sent. The answer goes
    under our dispute's id, so sending it again is a replay at the channel: an answer that met no reply (a timeout)
    is not recorded as sent, and the dispute poll sends it again until the channel says it holds it. A channel that
    takes no answers over its connector (an operator-opened dispute, a channel without dispute support) gets it by
    hand: the answer is recorded as sent by the operator who sends it."""
    dispute = Dispute.objects.select_related("payment", "channel").get(pk=dispute_id)
    if actor is not None:
        _require_operator(actor, dispute.payment)
    if dispute.status != Dispute.Status.EVIDENCE_SUBMITTED or dispute.answered_at is not None:
        raise Conflict(_("There is no answer waiting to be sent."), code="nothing_to_send")
    error = ""
    channel = dispute.channel
    respond = getattr(get_connector(channel.connector), "dispute_respond", None) if channel is not None else None
    if channel is not None and respond is not None and dispute.channel_reference:
        result = _answer_send(dispute, channel, respond)
        if result.outcome != ChannelOutcome.APPROVED:
            logger.warning("dispute answer for %s not taken: %s %s", dispute.public_id, result.outcome, result.code)
            error = f"{result.outcome}: {result.code}"[:200]
    with transaction.atomic():
        if error:
            Dispute.objects.filter(pk=dispute.pk).update(answer_error=error, updated_at=timezone.now())
        else:
            before = snapshot(dispute)
            sent = Dispute.objects.filter(pk=dispute.pk, answered_at__isnull=True).update(
                answered_at=timezone.now(), answer_error="", updated_at=timezone.now()
            )
            if sent:
                dispute.refresh_from_db()
                _audit(dispute, actor, "dispute.answer_send", before=before)
    dispute.refresh_from_db()
    return dispute


def _answer_send(dispute: Dispute, channel: Channel, respond: Any) -> DisputeAnswerResult:
    evidence = list(_evidence_of(dispute))
    answer = DisputeAnswer(
        channel=channel.remote_id or channel.code,
        dispute_reference=dispute.channel_reference,
        reference=dispute.public_id,
        text="\n\n".join(row.text for row in evidence if row.text),
        files=tuple(
            DisputeAnswerFile(row.filename, row.content_type, row.size, row.sha256) for row in evidence if row.filename
        ),
    )
    try:
        result: DisputeAnswerResult = respond(answer)
    except Exception as exc:  # a connector that raises has not told us whether the channel holds the answer
        logger.exception("dispute answer for %s raised", dispute.public_id)
        return DisputeAnswerResult(ChannelOutcome.UNKNOWN, code=exc.__class__.__name__)
    return result


# --- the channel's notices ------------------------------------------------------------------------------------------


@dataclass
class DisputePollReport:
    notices: int = 0
    opened: int = 0
    closed: int = 0
    ignored: int = 0
    answers_sent: int = 0
    answers_waiting: int = 0

    def counts(self) -> dict[str, int]:
        return dict(vars(self))


POLL_PAGES = 20  # feed pages one poll of a channel reads at most; the next run carries on


def disputes_poll(*, channel: Channel) -> DisputePollReport:
    """Reads the channel's dispute notices on from where the last run stopped (`DisputeFeedCursor`) and applies each
    idempotently: a dispute the channel opened is opened here once (by its reference: `dispute.created` to the
    merchant), a decision closes it won or lost. Then answers the channel did not confirm are sent again. A notice
    that cannot apply (a payment we do not know, more than is left to dispute, a dispute closed here meanwhile) is
    logged and passed. A feed that does not answer leaves the position where it was."""
    report = DisputePollReport()
    connector = get_connector(channel.connector)
    read = getattr(connector, "dispute_notices", None)
    if read is None:
        return report
    remote = channel.remote_id or channel.code
    cursor, _ = DisputeFeedCursor.objects.get_or_create(channel=channel)
    position, error = cursor.position, ""
    try:
        for _page in range(POLL_PAGES):
            try:
                feed: DisputeFeed = read(remote, position)
            except Exception as exc:
                logger.warning("dispute feed of %s: %s", channel.code, exc)
                error = str(exc)[:200] or exc.__class__.__name__
                break
            for notice in feed.notices:
                report.notices += 1
                _notice_apply(channel, notice, report)
                position = notice.position
            position = max(position, feed.position)
            if not feed.has_more:
                break
    finally:
        DisputeFeedCursor.objects.filter(pk=cursor.pk).update(position=position, polled_at=timezone.now(), error=error)
    waiting = (
        Dispute.objects.filter(
            channel=channel,
            status=Dispute.Status.EVIDENCE_SUBMITTED,
            answered_at__isnull=True,
            channel_reference__gt="",
        )
        .order_by("id")
        .values_list("pk", flat=True)
    )
    for pk in list(waiting):
        try:
            sent = dispute_answer_send(pk)
        except Conflict:
            continue  # closed or sent meanwhile
        if sent.answered_at is not None:
            report.answers_sent += 1
        else:
            report.answers_waiting += 1
    return report


def _notice_apply(channel: Channel, notice: DisputeNotice, report: DisputePollReport) -> None:
    attempt = (
        PaymentAttempt.objects.select_related("intent")
        .filter(channel=channel, reference=notice.payment_reference)
        .first()
    )
    if attempt is None:
        logger.warning(
            "dispute notice %s names no payment of ours (%s)", notice.dispute_reference, notice.payment_reference
        )
        report.ignored += 1
        return
    payment = attempt.intent
    known = Dispute.objects.filter(
        payment=payment, payment_created_at=payment.created_at, channel_reference=notice.dispute_reference
    ).first()
    if known is None:
        try:
            known = dispute_open(
                payment=payment,
                kind=notice.kind,
                amount=notice.amount,
                reason_code=notice.reason_code,
                opened_by=Dispute.OpenedBy.CHANNEL,
                channel_reference=notice.dispute_reference,
                opened_at=notice.at if notice.type == "opened" and notice.at is not None else None,
            )
        except (Conflict, ValidationFailed) as exc:
            logger.warning("dispute notice %s not opened: %s", notice.dispute_reference, exc)
            report.ignored += 1
            return
        report.opened += 1
    if notice.outcome in OUTCOMES and known.is_open:
        try:
            dispute_outcome_record(
                dispute_id=known.pk,
                outcome=notice.outcome,
                note=f"{channel.code} notice {notice.dispute_reference}",
                decided_at=notice.at if notice.type == "decided" else None,
            )
        except Conflict:
            report.ignored += 1  # closed here meanwhile (accepted, expired)
            return
        report.closed += 1


# --- closing ----------------------------------------------------------------------------------------------------------


def dispute_accept(*, merchant: Merchant, livemode: bool, dispute_id: str, actor: Any = None) -> Dispute:
    """The merchant accepts liability instead of answering: closed `accepted`, with a lost dispute's money. Only
    while no evidence was submitted: of an answer and an acceptance at once, one is taken."""
    dispute = dispute_get(merchant=merchant, livemode=livemode, dispute_id=dispute_id)
    _require_answerable(dispute, deadline=False)
    return _close(dispute, Dispute.Status.ACCEPTED, actor=actor, guard=Q(status=Dispute.Status.OPEN))


def dispute_outcome_record(
    *, dispute_id: int, outcome: str, actor: Any = None, note: str = "", decided_at: dt.datetime | None = None
) -> Dispute:
    """The channel's decision, from its notice or recorded by an operator: won or lost. `decided_at` is when the
    channel decided (its notice's time; never later than now): the dispute is closed as of then, as the channel's
    statement lists it."""
    if outcome not in OUTCOMES:
        raise ValidationFailed(_("The outcome is won or lost."), code="invalid_outcome", param="outcome")
    dispute = Dispute.objects.select_related("payment").get(pk=dispute_id)
    if actor is not None:
        _require_operator(actor, dispute.payment)
    return _close(dispute, outcome, actor=actor, note=note, at=decided_at)


def disputes_expire(*, today: dt.date | None = None) -> int:
    """The beat job: open disputes past their day with no answer sent are closed `expired`, which costs the merchant
    as a lost one. Each in its own transaction; one answered or closed meanwhile is left alone."""
    today = today or local_now().date()
    due = list(
        Dispute.objects.filter(status__in=Dispute.OPEN_STATUSES, respond_by__lt=today, answered_at__isnull=True)
        .order_by("respond_by", "id")
        .values_list("pk", flat=True)
    )
    expired = 0
    for pk in due:
        dispute = Dispute.objects.get(pk=pk)
        try:
            _close(dispute, Dispute.Status.EXPIRED, actor=None, guard=Q(answered_at__isnull=True, respond_by__lt=today))
        except Conflict:
            continue
        expired += 1
    return expired


def _close(
    dispute: Dispute, status: str, *, actor: Any, note: str = "", guard: Q | None = None, at: dt.datetime | None = None
) -> Dispute:
    now = timezone.now()
    closed_at = min(at, now) if at is not None else now
    with transaction.atomic():
        payment = (
            PaymentIntent.objects.select_for_update(of=("self",))
            .select_related("merchant", "channel")
            .get(pk=dispute.payment_id, created_at=dispute.payment_created_at)
        )
        before = snapshot(dispute)
        closing = Dispute.objects.filter(pk=dispute.pk, status__in=Dispute.OPEN_STATUSES)
        if guard is not None:
            closing = closing.filter(guard)
        if not closing.update(status=status, closed_at=closed_at, updated_at=now, outcome_note=note[:200]):
            raise Conflict(_("This dispute is closed or answered already."), code="dispute_closed")
        dispute.refresh_from_db()
        if dispute.carries_money:
            if status == Dispute.Status.WON:
                payment.amount_disputed -= dispute.amount
                payment_save(payment, "amount_disputed", "updated_at")
            else:
                payment.amount_charged_back += dispute.amount
                returned = reversal_apply(payment, cause=dispute.public_id)
                payment_save(payment, "amount_charged_back", "points_reversed", "updated_at")
                Dispute.objects.filter(pk=dispute.pk).update(
                    points_reversed=returned.points,
                    promotion_cost_returned=returned.merchant_cost,
                    cofunding_returned=returned.cofunding,
                )
                dispute.refresh_from_db()
        _audit(dispute, actor, f"dispute.{status}", before=before)
        events.dispute_changed(dispute, "dispute.closed")
    return dispute


# --- reads and checks -------------------------------------------------------------------------------------------------


def dispute_get(*, merchant: Merchant, livemode: bool, dispute_id: str) -> Dispute:
    """The merchant's dispute of this mode; another's, or none, is 404."""
    dispute = (
        Dispute.objects.select_related("payment", "merchant")
        .filter(public_id=dispute_id, merchant=merchant, livemode=livemode)
        .first()
    )
    if dispute is None:
        raise NotFound(_("No such dispute."), param="dispute")
    return dispute


def _require_answerable(dispute: Dispute, *, deadline: bool = True) -> None:
    if not dispute.is_open:
        raise Conflict(_("This dispute is closed."), code="dispute_closed")
    if dispute.answered_at is not None:
        raise Conflict(_("The answer was sent to the channel already."), code="dispute_closed")
    if deadline and deadline_passed(dispute):
        raise Conflict(_("The deadline to answer this dispute has passed."), code="deadline_passed")


def dispute_banks(payment: PaymentIntent) -> set[int]:
    """The banks whose operators act on the payment's disputes: its acquirer of record and the merchant's sponsor."""
    banks = {payment.merchant.sponsor_bank_id}
    if payment.acquirer_id is not None:
        banks.add(payment.acquirer_id)
    return {bank for bank in banks if bank is not None}


def _require_operator(actor: Any, payment: PaymentIntent) -> None:
    if getattr(actor, "pk", None) is None:
        raise PermissionDenied(_("Acting on a dispute takes an operator."), code="operator_required")
    scope = operator_scope(actor)
    if not any(scope.can_write(bank) for bank in dispute_banks(payment)):
        raise PermissionDenied(_("Only the acquirer's or the sponsor bank's operators may act on this dispute."))


def _audit(dispute: Dispute, actor: Any, action: str, *, before: dict[str, Any] | None) -> None:
    payment = dispute.payment
    audit_record(
        actor=actor,
        action=action,
        obj=dispute,
        before=before,
        after=snapshot(dispute),
        object_banks=sorted(dispute_banks(payment)),
    )
