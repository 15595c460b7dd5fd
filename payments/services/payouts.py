"""Payouts (代付): a settled batch's net paid to the merchant's settlement account by its sponsor bank's licensed
channel (no 二清), under a reference the channel answers once — so no retry, after a timeout or a crash, pays twice.

payouts_create  a payout for every `settled` batch with a positive net and no live payout (`<batch>-p<n>`, the
                sponsor bank's payout channel): `ready`, or `pending_approval` above PAYOUT_SECOND_APPROVAL_MINOR
                (needs_two_operators); and a NEW payout for a `returned` batch once the merchant's settlement account
                has changed since the returned payout went out (so a change made while it was on its way counts too).
                A frozen merchant's batches get none (held, or settled while frozen).
payouts_send    `sent` is committed before the channel is called, the call is made outside any transaction and the
                answer recorded after it. No answer, or an error: an inquiry by the reference; a payout the channel
                never accepted goes back to `ready` and is sent again under the same reference.
payouts_poll    asks the channel about `sent` payouts: paid → payout and batch `paid` (settlement.paid); returned →
                payout `returned` with the reason, batch `returned` (settlement.returned: the batch stays owed). One the
                channel never accepted (its sender died between marking it sent and the call) is sent again, under
                its reference; a sent payout is never made anew.
releases        maker-checker through the approval queue (`core.approvals`, kind "payments.payout_release"): an
                operator of the merchant's sponsor bank (or an alliance operator) requests a release, another approves
                it — for a payout above the threshold, and for a frozen merchant's held batch, which the approval moves
                to `settled` with a `ready` payout (sent although the merchant is still frozen). Audited.
payout_resend   an operator sends a returned batch again (a new payout, a new reference) without waiting for an
                account change. Audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import CharField, Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.admin_display import money_text
from core.approvals import ApprovalKind, approval_approve, approval_request
from core.audit import audit_record
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest
from core.text import id_or_none
from merchants.models import SettlementAccount
from merchants.services import merchant_request_bank, merchant_request_line, require_operator_of

from .. import events
from ..connectors import get_connector
from ..connectors.base import Connector, Outcome, PayoutRequest, PayoutResult, PayoutState
from ..models import Channel, Payout, SettlementBatch
from ..selectors import payout_channel
from .common import needs_two_operators

logger = logging.getLogger("payments.services")

Status = Payout.Status
BatchStatus = SettlementBatch.Status
LIVE = (Status.PENDING_APPROVAL, Status.READY, Status.SENT, Status.PAID)
PAYOUT_RELEASE = "payments.payout_release"
RELEASE_PERMISSION = "payments.release_payout"


@dataclass
class PayoutReport:
    """What one run of a payout job did; each job fills the counts that concern it."""

    examined: int = 0
    created: int = 0
    awaiting_approval: int = 0
    resent: int = 0  # a new payout for a returned batch
    no_account: int = 0
    no_channel: int = 0
    frozen: int = 0
    sent: int = 0
    in_flight: int = 0  # accepted, the result not in yet
    paid: int = 0
    returned: int = 0
    retried: int = 0  # never accepted: ready again, or sent again under the same reference
    unknown: int = 0

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "examined" and getattr(self, f.name)}


def payout_needs_two(amount: int, currency: str) -> bool:
    return needs_two_operators(amount=amount, currency=currency, above=settings.PAYOUT_SECOND_APPROVAL_MINOR)


# --- making payouts ------------------------------------------------------------------------------------------------


def _live_payout() -> Exists:
    return Exists(Payout.objects.filter(batch=OuterRef("pk"), status__in=LIVE))


def _payouts_of_batch() -> Subquery:
    made = Payout.objects.filter(batch=OuterRef("pk")).order_by().values("batch").annotate(n=Count("pk")).values("n")
    return Subquery(made)


ChannelKey = tuple[int, str, bool]


def _payout_for(
    batch: SettlementBatch,
    *,
    sequence: int,
    report: PayoutReport,
    channels: dict[ChannelKey, Channel | None] | None = None,
) -> Payout | None:
    """A new payout of the batch's net (unsaved): `ready`, or `pending_approval` above the threshold; None (counted)
    when the merchant has no settlement account or its sponsor bank no payout channel for the currency. `channels`
    keeps the channels already looked up during a run."""
    merchant = batch.merchant
    try:
        account = merchant.settlement_account
    except SettlementAccount.DoesNotExist:
        report.no_account += 1
        return None
    channels = {} if channels is None else channels
    key = (merchant.sponsor_bank_id, batch.currency, batch.livemode)
    if key not in channels:
        channels[key] = payout_channel(sponsor_bank_id=key[0], currency=key[1], livemode=key[2])
    channel = channels[key]
    if channel is None:
        report.no_channel += 1
        logger.warning("no payout channel at bank %s for %s", merchant.sponsor_bank_id, batch.currency)
        return None
    needs_two = payout_needs_two(batch.net, batch.currency)
    return Payout(
        batch=batch,
        merchant=merchant,
        amount=batch.net,
        currency=batch.currency,
        reference=f"{batch.public_id}-p{sequence}",
        channel=channel,
        account_last4=account.account_last4,
        status=Status.PENDING_APPROVAL if needs_two else Status.READY,
    )


def _due_batches() -> QuerySet[SettlementBatch]:
    """Settled batches owed a payout; returned ones whose merchant's settlement account changed after their last payout
    was sent to the account it had then."""
    last_return = (
        Payout.objects.filter(batch=OuterRef("pk"), status=Status.RETURNED).order_by("-sent_at").values("sent_at")
    )
    fixed = Q(status=BatchStatus.RETURNED, merchant__settlement_account__updated_at__gt=F("returned_sent_at"))
    return (
        SettlementBatch.objects.filter(net__gt=0, merchant__payouts_frozen=False)
        .filter(status__in=[BatchStatus.SETTLED, BatchStatus.RETURNED])
        .annotate(returned_sent_at=Subquery(last_return[:1]), payouts_made=_payouts_of_batch())
        .filter(Q(status=BatchStatus.SETTLED) | fixed)
        .exclude(_live_payout())
        .select_related("merchant__settlement_account")
        .order_by("pk")
    )


def payouts_create(*, chunk: int = 500) -> PayoutReport:
    """One payout for every batch owed one (see `_due_batches`), inserted a chunk at a time; a batch that meanwhile got
    a live payout elsewhere is skipped by the one-live-payout constraint, never paid twice."""
    report = PayoutReport()
    report.frozen = (
        SettlementBatch.objects.filter(status=BatchStatus.SETTLED, net__gt=0, merchant__payouts_frozen=True)
        .exclude(_live_payout())
        .count()
    )
    pending: list[Payout] = []
    channels: dict[ChannelKey, Channel | None] = {}
    for batch in _due_batches().iterator(chunk_size=chunk):
        report.examined += 1
        sequence = (batch.payouts_made or 0) + 1  # type: ignore[attr-defined]
        payout = _payout_for(batch, sequence=sequence, report=report, channels=channels)
        if payout is None:
            continue
        if batch.status == BatchStatus.RETURNED:
            report.resent += 1
        pending.append(payout)
        if len(pending) >= chunk:
            _insert(pending, report)
            pending = []
    _insert(pending, report)
    return report


def _insert(payouts: list[Payout], report: PayoutReport) -> None:
    if not payouts:
        return
    Payout.objects.bulk_create(payouts, ignore_conflicts=True)
    made = Payout.objects.filter(reference__in=[p.reference for p in payouts])
    report.created += made.count()
    report.awaiting_approval += made.filter(status=Status.PENDING_APPROVAL).count()


# --- sending and finding out ---------------------------------------------------------------------------------------


def _claim(payout_id: int, *, was: str, sent_at: Any = None) -> tuple[Payout, PayoutRequest] | None:
    """Marks the payout `sent` (and its batch `paying`) and commits, before anyone calls the channel; None when
    another process took it first (it is no longer in `was`, or was sent again since `sent_at`)."""
    with transaction.atomic():
        payout = (
            Payout.objects.select_for_update(of=("self",))
            .select_related("channel", "batch", "merchant")
            .filter(pk=payout_id, status=was)
            .first()
        )
        if payout is None or (was == Status.SENT and payout.sent_at != sent_at):
            return None
        account = SettlementAccount.objects.filter(merchant_id=payout.merchant_id).first()
        if account is None or payout.channel is None:
            return None
        payout.status, payout.sent_at = Status.SENT, timezone.now()
        payout.attempts += 1
        payout.account_last4 = account.account_last4
        payout.save(update_fields=["status", "sent_at", "attempts", "account_last4"])
        SettlementBatch.objects.filter(
            pk=payout.batch_id, status__in=[BatchStatus.SETTLED, BatchStatus.RETURNED]
        ).update(status=BatchStatus.PAYING)
    channel: Channel = payout.channel
    request = PayoutRequest(
        channel=channel.remote_id or channel.code,
        reference=payout.reference,
        amount=payout.amount,
        currency=payout.currency,
        account_last4=account.account_last4,
        account_name=account.account_name,
    )
    return payout, request


def _connector(payout: Payout) -> Connector:
    assert payout.channel is not None
    return get_connector(payout.channel.connector)


def _inquire(connector: Connector, reference: str) -> PayoutResult:
    try:
        return connector.payout_inquire(reference)
    except Exception:
        logger.exception("payout inquiry raised for %s", reference)
        return PayoutResult(Outcome.UNKNOWN)


def _transmit(payout: Payout, request: PayoutRequest, report: PayoutReport) -> None:
    """Calls the channel (outside any transaction) and records its answer; no answer or an error → inquiry."""
    connector = _connector(payout)
    try:
        result = connector.payout(request)
    except Exception:
        logger.exception("payout raised for %s", payout.reference)
        result = PayoutResult(Outcome.UNKNOWN)
    if result.outcome in (Outcome.UNKNOWN, Outcome.FAILED):
        result = _inquire(connector, payout.reference)
    _record(payout, result, report)


def _record(payout: Payout, result: PayoutResult, report: PayoutReport) -> None:
    if result.outcome == Outcome.DECLINED:  # the channel refused the instruction: nothing will be paid
        _finish(payout, Status.RETURNED, reason=result.code or "refused", report=report)
    elif result.outcome != Outcome.APPROVED:
        report.unknown += 1  # still `sent`: the poll asks again
    elif result.state == PayoutState.PAID:
        _finish(payout, Status.PAID, report=report)
    elif result.state == PayoutState.RETURNED:
        _finish(payout, Status.RETURNED, reason=result.return_reason or "returned", report=report)
    elif result.state == PayoutState.NOT_FOUND:
        # Never accepted: sent again by the next run, under the same reference.
        if Payout.objects.filter(pk=payout.pk, status=Status.SENT, sent_at=payout.sent_at).update(status=Status.READY):
            report.retried += 1
    else:
        report.in_flight += 1


def _finish(payout: Payout, status: str, *, report: PayoutReport, reason: str = "") -> None:
    """Paid or returned, with the batch, and its event in the same transaction. Recorded once: a second answer for
    the same reference (a late one, a poll's) finds the payout finished and changes nothing."""
    with transaction.atomic():
        locked = Payout.objects.select_for_update().filter(pk=payout.pk, status__in=[Status.SENT, Status.READY]).first()
        if locked is None:
            return
        locked.status, locked.return_reason, locked.finished_at = status, reason[:100], timezone.now()
        locked.save(update_fields=["status", "return_reason", "finished_at"])
        batch = (
            SettlementBatch.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=locked.batch_id)
        )
        batch.status = BatchStatus.PAID if status == Status.PAID else BatchStatus.RETURNED
        batch.save(update_fields=["status"])
        events.settlement_status_changed(batch)
    if status == Status.PAID:
        report.paid += 1
    else:
        report.returned += 1


def payouts_send(*, limit: int = 500) -> PayoutReport:
    """Sends `ready` payouts, oldest first. A frozen merchant's wait unless a second operator released them."""
    report = PayoutReport()
    ready = Payout.objects.filter(status=Status.READY)
    releasable = _released() | Q(merchant__payouts_frozen=False)
    report.frozen = ready.exclude(releasable).count()
    for payout_id in ready.filter(releasable).order_by("pk").values_list("pk", flat=True)[:limit]:
        report.examined += 1
        claimed = _claim(payout_id, was=Status.READY)
        if claimed is None:
            continue
        report.sent += 1
        _transmit(*claimed, report)
    return report


def payouts_poll(*, inquire_after: timedelta | None = None, limit: int = 500) -> PayoutReport:
    """Asks the channel about payouts sent at least `inquire_after` ago (PAYOUT_INQUIRE_AFTER_SECONDS): the result
    is recorded; one the channel never accepted is sent again under its own reference."""
    report = PayoutReport()
    wait = inquire_after if inquire_after is not None else timedelta(seconds=settings.PAYOUT_INQUIRE_AFTER_SECONDS)
    due = (
        Payout.objects.filter(status=Status.SENT, sent_at__lte=timezone.now() - wait)
        .select_related("channel")
        .order_by("sent_at")[:limit]
    )
    for payout in due:
        report.examined += 1
        result = _inquire(_connector(payout), payout.reference)
        if result.outcome == Outcome.APPROVED and result.state == PayoutState.NOT_FOUND:
            claimed = _claim(payout.pk, was=Status.SENT, sent_at=payout.sent_at)
            if claimed is not None:
                report.retried += 1
                _transmit(*claimed, report)
            continue
        _record(payout, result, report)
    return report


# --- releases (maker-checker) and resends --------------------------------------------------------------------------


def _require_operator(operator: Any, bank_id: int) -> None:
    """An operator of the bank (or an alliance operator): the system never releases money on its own."""
    if getattr(operator, "pk", None) is None:
        raise PermissionDenied(_("Releasing a payout takes an operator."), code="operator_required")
    require_operator_of(operator, bank_id)


def _frozen_release(batch: SettlementBatch) -> bool:
    """Whether the batch waits for its frozen merchant's funds to be released: held, or settled while frozen."""
    return batch.status == BatchStatus.HELD or (batch.status == BatchStatus.SETTLED and batch.merchant.payouts_frozen)


def _pending_payout(target: Payout | SettlementBatch, operator: Any) -> Payout:
    """The payout waiting for a release, locked, once the operator may act for its merchant's sponsor bank: the one
    given, or the batch's."""
    payouts = Payout.objects.select_for_update(of=("self",)).select_related("batch", "merchant")
    if isinstance(target, Payout):
        payout = payouts.filter(pk=target.pk).first()
    else:
        payout = payouts.filter(batch=target, status=Status.PENDING_APPROVAL).first()
    if payout is None:
        raise Conflict(_("This payout is not waiting for a release."), code="payout_not_pending")
    _require_operator(operator, payout.merchant.sponsor_bank_id)
    if payout.status != Status.PENDING_APPROVAL:
        raise Conflict(_("This payout is not waiting for a release."), code="payout_not_pending")
    return payout


def _open(batch: SettlementBatch, **values: Any) -> Payout:
    """Saves a new payout of the batch (an operator's: a held batch's release, a resend)."""
    made = _payout_for(batch, sequence=batch.payouts.count() + 1, report=PayoutReport())
    if made is None:
        raise ValidationFailed(
            _("The merchant has no settlement account, or its sponsor bank no payout channel in %(currency)s.")
            % {"currency": batch.currency},
            code="payout_unroutable",
        )
    for name, value in values.items():
        setattr(made, name, value)
    try:
        with transaction.atomic():
            made.save()
    except IntegrityError:
        raise Conflict(_("This batch already has a payout."), code="payout_exists") from None
    return made


def _release_audit(operator: Any, action: str, payout: Payout, **after: Any) -> None:
    audit_record(
        actor=operator,
        action=action,
        obj=payout,
        after={
            "batch": payout.batch.public_id,
            "reference": payout.reference,
            "amount": payout.amount,
            "currency": payout.currency,
            **after,
        },
        bank_id=payout.merchant.sponsor_bank_id,
    )


def payout_release_requests_pending(payout_id: int) -> QuerySet[ApprovalRequest]:
    """The requests to release this payout still waiting in the approval queue (at most one)."""
    return ApprovalRequest.objects.filter(
        kind=PAYOUT_RELEASE,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
        payload__payout_id=payout_id,
    )


def _released() -> Exists:
    """Whether a second operator released the payout: an approved release request has it as its result."""
    return Exists(
        ApprovalRequest.objects.filter(
            kind=PAYOUT_RELEASE,
            status=ApprovalRequest.Status.APPROVED,
            result_type="payments.payout",
            result_id=Cast(OuterRef("pk"), output_field=CharField()),
        )
    )


def _locked_pending_payout(payout_id: Any) -> Payout:
    pk = id_or_none(str(payout_id))
    payout = (
        None
        if pk is None
        else Payout.objects.select_for_update(of=("self",)).select_related("batch", "merchant").filter(pk=pk).first()
    )
    if payout is None:
        raise NotFound(_("No such payout."), param="payout")
    if payout.status != Status.PENDING_APPROVAL:
        raise Conflict(_("This payout is not waiting for a release."), code="payout_not_pending")
    return payout


def release_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a release request: the payout (with what the queue shows of it). Run when asked and again when
    approved (the request itself is then no longer pending): the payout must still wait for its release."""
    payout = _locked_pending_payout(payload.get("payout_id"))
    if payout_release_requests_pending(payout.pk).exists():
        raise Conflict(
            _("Its release was already requested: a second operator approves it."), code="payout_release_requested"
        )
    return {
        "payout_id": payout.pk,
        "merchant_id": payout.merchant_id,
        "batch": payout.batch.public_id,
        "reference": payout.reference,
        "amount": payout.amount,
        "currency": payout.currency,
        "held": payout.batch.status == BatchStatus.HELD,
    }


def release_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        merchant_request_line(payload),
        (_("batch"), str(payload.get("batch", "-"))),
        (_("payout"), str(payload.get("reference", "-"))),
        (_("amount"), money_text(int(payload.get("amount") or 0), str(payload.get("currency", "")))),
        (_("held batch of a frozen merchant"), _("yes") if payload.get("held") else _("no")),
    ]


def payout_release_apply(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> Payout:
    """Releases the payout (the kind's `apply`, inside the approval's transaction, after `release_validate`): it
    becomes `ready`; a held batch is `settled` again (its payout is sent although the merchant is still frozen)."""
    payout = _locked_pending_payout(payload["payout_id"])
    _require_operator(checker, payout.merchant.sponsor_bank_id)
    batch = SettlementBatch.objects.select_for_update(of=("self",)).get(pk=payout.batch_id)
    was_held = batch.status == BatchStatus.HELD
    if was_held:
        batch.status, batch.hold_reason = BatchStatus.SETTLED, ""
        batch.save(update_fields=["status", "hold_reason"])
    payout.status = Status.READY
    payout.save(update_fields=["status"])
    _release_audit(checker, "payout.release_approve", payout, requested_by=maker.pk, held=was_held)
    return payout


PAYOUT_RELEASE_KIND = ApprovalKind(
    code=PAYOUT_RELEASE,
    label=gettext_lazy("Release a payout"),
    permission=RELEASE_PERMISSION,
    validate=release_validate,
    bank_of=merchant_request_bank,
    apply=payout_release_apply,
    describe=release_describe,
)


def payout_release_request(*, target: Payout | SettlementBatch, operator: Any, reason: str = "") -> ApprovalRequest:
    """The maker's half: a release request in the approval queue, for a payout waiting above the threshold (or a
    batch's), or for a frozen merchant's held batch, whose payout is made now, waiting for the approval. Another
    operator approves it (`core.approvals.approval_approve`, or `payout_release_approve`)."""
    with transaction.atomic():
        if isinstance(target, SettlementBatch) and not target.payouts.filter(status=Status.PENDING_APPROVAL).exists():
            batch = SettlementBatch.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=target.pk)
            _require_maker(operator, batch.merchant.sponsor_bank_id)
            if not _frozen_release(batch) or batch.net <= 0:
                raise Conflict(_("Only a frozen merchant's held batch is released this way."), code="batch_not_held")
            payout = _open(batch, status=Status.PENDING_APPROVAL)
            _release_audit(operator, "payout.release_request", payout, held=batch.status, hold_reason=batch.hold_reason)
            default = _("Release of a frozen merchant's held batch.")
        else:
            payout = _pending_payout(target, operator)
            _require_maker(operator, payout.merchant.sponsor_bank_id)
            default = _("A payout above the second-approval threshold.")
        return approval_request(
            kind=PAYOUT_RELEASE, payload={"payout_id": payout.pk}, reason=reason.strip() or default, maker=operator
        )


def _require_maker(operator: Any, bank_id: int) -> None:
    _require_operator(operator, bank_id)
    if not operator.has_perm(RELEASE_PERMISSION):
        raise PermissionDenied(_("Your role may not release payouts."), code="release_not_allowed")


def payout_release_approve(*, target: Payout | SettlementBatch, operator: Any) -> Payout:
    """The checker's half from the payout's own page: approves the release request waiting for it, through the
    approval queue (a different operator from its maker, of the merchant's sponsor bank or the alliance)."""
    with transaction.atomic():
        payout = _pending_payout(target, operator)
        request = payout_release_requests_pending(payout.pk).first()
    if request is None:
        raise Conflict(
            _("Request its release first: a second operator then approves it."), code="payout_release_not_requested"
        )
    if request.maker_id == operator.pk:
        raise PermissionDenied(_("You asked for this release: a different operator must approve it."), code="four_eyes")
    approval_approve(request_id=request.pk, checker=operator)
    return Payout.objects.select_related("batch", "merchant").get(pk=payout.pk)


def payout_release_asked(target: Payout | SettlementBatch) -> bool:
    """Whether a release of this payout (or of this batch's payout) waits in the approval queue."""
    pending = target if isinstance(target, Payout) else target.payouts.filter(status=Status.PENDING_APPROVAL).first()
    return pending is not None and payout_release_requests_pending(pending.pk).exists()


def payout_release(*, target: Payout | SettlementBatch, operator: Any, reason: str = "") -> Payout:
    """One button for both halves: approves a release another operator asked for, or asks for one (with `reason`).
    The payout is `ready` once released; still `pending_approval` when this was the request."""
    if payout_release_asked(target):
        return payout_release_approve(target=target, operator=operator)
    request = payout_release_request(target=target, operator=operator, reason=reason)
    return Payout.objects.select_related("batch", "merchant").get(pk=request.payload["payout_id"])


@transaction.atomic
def payout_resend(*, payout: Payout, operator: Any) -> Payout:
    """An operator sends a returned batch again now: a new payout under a new reference (`ready`, or waiting for a
    release above the threshold)."""
    locked = Payout.objects.select_for_update(of=("self",)).select_related("merchant").filter(pk=payout.pk).first()
    if locked is None:
        raise NotFound(_("No such payout."), param="payout")
    _require_operator(operator, locked.merchant.sponsor_bank_id)
    batch = SettlementBatch.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=locked.batch_id)
    if locked.status != Status.RETURNED or batch.status != BatchStatus.RETURNED:
        raise Conflict(_("Only a returned payout is sent again."), code="payout_not_returned")
    made = _open(batch)
    _release_audit(operator, "payout.resend", made, returned=locked.reference, return_reason=locked.return_reason)
    return made


def payout_returned_at_channel(payout: Payout, *, reason: str) -> Payout:
    """Reconciliation took the channel's statement over ours: the payout was returned (or never paid) at the channel.
    The payout `returned` with the reason, its batch `returned` (the money is still owed: it goes out again once the
    account is fixed, or an operator sends it again) and `settlement.returned`, in the caller's transaction."""
    with transaction.atomic():
        locked = (
            Payout.objects.select_for_update()
            .filter(pk=payout.pk, status__in=[Status.SENT, Status.READY, Status.PAID])
            .first()
        )
        if locked is None:
            raise Conflict(_("Only a payout sent or paid can be returned."), code="payout_not_returnable")
        locked.status, locked.return_reason, locked.finished_at = Status.RETURNED, reason[:100], timezone.now()
        locked.save(update_fields=["status", "return_reason", "finished_at"])
        batch = (
            SettlementBatch.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=locked.batch_id)
        )
        batch.status = BatchStatus.RETURNED
        batch.save(update_fields=["status"])
        events.settlement_status_changed(batch)
    return locked
