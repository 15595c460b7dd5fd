from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Func, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.crypto import keyed_hash
from core.ids import MILLISECOND, new_public_id, public_id_time
from members.models import Card, Cardholder, CardProduct, LinkedAccount, MemberBank, SpendCategory
from merchants.models import Merchant, RiskGrade, SettlementCycle

from .windows import CAPTURE_SPAN_DAYS


def public_id(prefix: str) -> str:
    return new_public_id(prefix)


def created_now() -> dt.datetime:
    """Now, read when the row is written (as `auto_now_add` read it): a default that looks `timezone.now` up at each
    call, so a clock frozen in a test dates the row."""
    return timezone.now()


class PaymentMethod(models.TextChoices):
    CARD = "card", _("card")
    PAYMENT_CODE = "payment_code", _("payment code")
    AGREEMENT = "agreement", _("agreement")
    BALANCE = "balance", _("balance")


class RiskOutcome(models.TextChoices):
    ALLOW = "allow", _("allow")
    REVIEW = "review", _("review")
    BLOCK = "block", _("block")


class RiskDecision(models.TextChoices):
    APPROVED = "approved", _("approved")
    REJECTED = "rejected", _("rejected")
    EXPIRED = "expired", _("expired undecided")


class StatementFormat(models.TextChoices):
    CSV_V1 = "csv_v1", _("CSV, comma-separated (csv_v1)")
    CSV_V2 = "csv_v2", _("CSV, bank layout (csv_v2)")
    FIXED_V1 = "fixed_v1", _("fixed-width (fixed_v1)")


class Channel(models.Model):
    """A way money moves: an acquirer, a bank's debit, a wallet, the prepaid issuer, a digital-RMB wallet.

    Every channel has an acquirer of record, a member holding an acquiring licence; Mengka never holds the funds.
    """

    class Kind(models.TextChoices):
        ACQUIRER = "acquirer", _("acquirer")
        BANK_DEBIT = "bank_debit", _("bank balance debit")
        WALLET = "wallet", _("wallet")
        PREPAID = "prepaid", _("prepaid issuer")
        DIGITAL_RMB = "digital_rmb", _("digital RMB wallet")

    code = models.CharField(_("code"), max_length=48, unique=True, validators=[RegexValidator(r"^[a-z0-9-]{3,48}$")])
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.ACQUIRER)
    acquirer = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, related_name="channels", verbose_name=_("acquirer of record")
    )
    connector = models.CharField(
        _("connector"), max_length=32, default="simulator", help_text=_("Registered connector that talks to it.")
    )
    remote_id = models.CharField(_("id at the connector"), max_length=64, blank=True)
    methods = models.JSONField(_("payment methods"), default=list)
    currencies = models.JSONField(_("currencies"), default=list)
    min_amount = models.BigIntegerField(_("minimum amount (minor units)"), default=1)
    max_amount = models.BigIntegerField(_("maximum amount (minor units)"), default=10**10)
    fee_percent = models.DecimalField(_("fee percent"), max_digits=7, decimal_places=4, default=0)
    fee_fixed = models.BigIntegerField(_("fixed fee (minor units)"), default=0)
    cutoff = models.TimeField(_("daily cut-off"), default=dt.time(23, 0))
    authorization_hours = models.PositiveIntegerField(_("authorisation validity (hours)"), default=7 * 24)
    enabled = models.BooleanField(_("enabled"), default=True)
    payouts = models.BooleanField(
        _("carries payouts"),
        default=False,
        help_text=_(
            "Its acquirer's licensed channel for paying settlements to the merchants it sponsors (no 二清): a "
            "merchant's payouts go through the enabled one of its sponsor bank that takes the currency."
        ),
    )
    sandbox = models.BooleanField(
        _("sandbox"),
        default=False,
        help_text=_("Carries test-mode payments only, and never a live one; a live channel never carries a test one."),
    )
    statement_format = models.CharField(
        _("statement format"),
        max_length=12,
        choices=StatementFormat.choices,
        default=StatementFormat.CSV_V1,
        help_text=_("The layout of the channel's daily statement file, as the channel writes it."),
    )
    breaker_consecutive_failures = models.PositiveSmallIntegerField(
        _("breaker: consecutive failures to open"), default=5
    )
    breaker_failure_rate = models.DecimalField(
        _("breaker: failure rate to open"), max_digits=4, decimal_places=3, default=Decimal("0.5")
    )
    breaker_window = models.PositiveSmallIntegerField(_("breaker: window (attempts)"), default=20)
    breaker_cooldown_seconds = models.PositiveIntegerField(_("breaker: cool-down (s)"), default=30)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ("code",)
        constraints = [
            models.CheckConstraint(condition=Q(min_amount__gte=1), name="channel_min_amount_positive"),
            models.CheckConstraint(condition=Q(max_amount__gte=F("min_amount")), name="channel_limits_ordered"),
            models.CheckConstraint(condition=Q(fee_percent__gte=0, fee_fixed__gte=0), name="channel_fees_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.acquirer.code})"


class ShanghaiDate(Func):
    """A moment's date in Asia/Shanghai, the business calendar's zone, `days` later: for the database's checks (a
    check's SQL is fixed, whatever the connection's time zone)."""

    output_field = models.DateField()
    template = "((%(expressions)s AT TIME ZONE 'Asia/Shanghai')::date + %(days)s)"

    def __init__(self, expression: Any, days: int = 0, **extra: Any) -> None:
        super().__init__(expression, days=int(days), **extra)


class PaymentManager(models.Manager["PaymentIntent"]):
    """Reads of one payment that name its month (the time its public id carries, or its `created_at`)."""

    def by_public_id(self, public_id: str) -> models.QuerySet[PaymentIntent]:
        """By public id. A timed id (core.ids) carries the payment's `created_at` to the millisecond, so the read is
        bounded to it; an id made before payments had timed ids holds no time and is looked up by itself alone."""
        payments = self.filter(public_id=public_id)
        made = public_id_time(public_id, "pay")
        if made is not None:
            payments = payments.filter(created_at__gte=made, created_at__lt=made + MILLISECOND)
        return payments

    def find(self, public_id: str, shape: Callable[[models.QuerySet[PaymentIntent]], models.QuerySet[Any]]) -> Any:
        """The first row of `shape(the payments with this public id)`, None when there is none. Read in the id's
        millisecond (`by_public_id`); only when nothing is there, in every month: a payment dated otherwise than its id
        (the demo dates its history back) is still found, at one more read."""
        found = shape(self.by_public_id(public_id)).first()
        if found is None and public_id_time(public_id, "pay") is not None:
            found = shape(self.filter(public_id=public_id)).first()
        return found

    def one(self, payment: PaymentIntent) -> models.QuerySet[PaymentIntent]:
        """The payment, to lock, update or read back, in its own month's partition."""
        return self.filter(pk=payment.pk, created_at=payment.created_at)


class PaymentIntent(models.Model):
    """A merchant's request to be paid, and everything that happened to it.

    requires_confirmation → processing → requires_capture / succeeded / failed / canceled. Amounts are minor units.
    `amount_refund_reserved` counts refunds in flight and done; `amount_refunded` only those that succeeded.

    The table is partitioned by month on `created_at` (docs/scaling.md, "Partitioning by month"). A partitioned
    table's unique keys must hold the partition column, so the database's keys are `(id, created_at)` and
    `(public_id, created_at)`; the model states the rules they keep. They mean the same: ids come from one identity
    sequence, and a public id carries at least 128 random bits (a timed one its millisecond besides), so no two
    payments draw one, whatever their months. Every row that names a payment carries its `created_at` and refers to
    `(id, created_at)`; the payment code's "one payment per code" is kept on the code's row (`PaymentCode.used_by`).

    A payment made by the services has a timed public id (core.ids) made of its `created_at`, both set from one
    instant (`payment_create`); find one by public id with `PaymentIntent.objects.by_public_id`, and lock, update or
    read back one with `PaymentIntent.objects.one(payment)`. A payment written otherwise (the tests' factories, the
    benchmarks' seeders) gets a random id, which is found all the same, reading every month.
    """

    class Status(models.TextChoices):
        REQUIRES_CONFIRMATION = "requires_confirmation", _("requires confirmation")
        PROCESSING = "processing", _("processing")
        REQUIRES_CAPTURE = "requires_capture", _("requires capture")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        CANCELED = "canceled", _("canceled")

    class CaptureMethod(models.TextChoices):
        AUTOMATIC = "automatic", _("automatic")
        MANUAL = "manual", _("manual")

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "pay"), editable=False
    )
    # Every status change rewrites all of this table's index entries (status is indexed, so no update is HOT): each
    # index here is one a query uses. The merchant is led by (merchant, livemode, -id); status by (status, …).
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="payments", db_index=False, verbose_name=_("merchant")
    )
    cardholder = models.ForeignKey(  # led by (cardholder, -created_at, -id): no index of its own
        Cardholder, on_delete=models.PROTECT, related_name="payments", db_index=False, verbose_name=_("cardholder")
    )
    card = models.ForeignKey(
        Card, null=True, blank=True, on_delete=models.PROTECT, related_name="payments", verbose_name=_("card")
    )
    linked_account = models.ForeignKey(
        LinkedAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
        verbose_name=_("linked account"),
    )
    # One payment per code: in the database, (payment_code_id, id) → the code's (id, used_by_id), so a payment
    # naming a code must be the one payment the code records (`PaymentCode.used_by`).
    payment_code = models.OneToOneField(
        "PaymentCode",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payment",
        db_constraint=False,
        verbose_name=_("payment code"),
    )
    agreement = models.ForeignKey(
        "Agreement",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments",
        verbose_name=_("agreement"),
    )
    method = models.CharField(_("method"), max_length=16, choices=PaymentMethod.choices, default=PaymentMethod.CARD)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    amount = models.BigIntegerField(_("amount"))
    amount_capturable = models.BigIntegerField(_("capturable"), default=0)
    amount_captured = models.BigIntegerField(_("captured"), default=0)
    amount_refunded = models.BigIntegerField(_("refunded"), default=0)
    amount_refund_reserved = models.BigIntegerField(_("refunds reserved"), default=0)
    amount_disputed = models.BigIntegerField(
        _("disputed"),
        default=0,
        help_text=_("Chargebacks and error adjustments open or lost: no longer refundable."),
    )
    amount_charged_back = models.BigIntegerField(
        _("charged back"),
        default=0,
        help_text=_("Chargebacks and error adjustments lost: reversed with the refunds (points, promotions)."),
    )
    status = models.CharField(_("status"), max_length=24, choices=Status.choices, default=Status.REQUIRES_CONFIRMATION)
    capture_method = models.CharField(
        _("capture method"), max_length=16, choices=CaptureMethod.choices, default=CaptureMethod.AUTOMATIC
    )
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="payments", verbose_name=_("channel")
    )
    # Not indexed: no query looks payments up by their member banks (clearing reads a business date's payments).
    acquirer = models.ForeignKey(
        MemberBank,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="acquired_payments",
        db_index=False,
        verbose_name=_("acquirer"),
    )
    issuer = models.ForeignKey(
        MemberBank,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="issued_payments",
        db_index=False,
        verbose_name=_("issuer"),
    )
    spend_category = models.CharField(
        _("spend category"), max_length=16, choices=SpendCategory.choices, default=SpendCategory.OTHER
    )
    description = models.CharField(_("description"), max_length=200, blank=True)
    merchant_reference = models.CharField(_("merchant reference"), max_length=64, blank=True)
    # Indexed with the merchant (below): settlement reads a chunk of merchants' business dates.
    business_date = models.DateField(_("business date"), null=True, blank=True)
    authorized_at = models.DateTimeField(_("authorised"), null=True, blank=True)
    authorization_expires_at = models.DateTimeField(_("authorisation expires"), null=True, blank=True)
    captured_at = models.DateTimeField(_("captured"), null=True, blank=True)
    canceled_at = models.DateTimeField(_("canceled"), null=True, blank=True)
    cancellation_reason = models.CharField(_("cancellation reason"), max_length=32, blank=True)
    failure_code = models.CharField(_("failure code"), max_length=64, blank=True)
    failure_message = models.CharField(_("failure message"), max_length=255, blank=True)
    points_earned = models.BigIntegerField(_("points earned"), default=0)
    points_reversed = models.BigIntegerField(_("points reversed"), default=0)
    points_used = models.BigIntegerField(_("points paid with"), default=0)
    points_amount = models.BigIntegerField(
        _("paid with points (minor units)"), default=0, help_text=_("Not part of `amount`, which is the cash part.")
    )
    discount_amount = models.BigIntegerField(
        _("promotion discount (minor units)"),
        default=0,
        help_text=_("Not part of `amount`: what the merchant's promotions took off the price asked."),
    )
    promotion_points = models.BigIntegerField(_("points given by promotions"), default=0)
    promotions = models.JSONField(
        _("promotions applied"), default=list, blank=True, help_text=_("One line per promotion applied, as priced.")
    )
    store = models.ForeignKey(
        "merchants.Store",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        verbose_name=_("store"),
    )
    points_hold = models.ForeignKey(
        "rewards.Hold",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        db_index=False,
        verbose_name=_("points hold"),
    )
    points_spend = models.ForeignKey(  # (points_spend_id, points_spend_created_at) in the database
        "rewards.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        db_index=False,
        db_constraint=False,
        verbose_name=_("points spend"),
    )
    points_spend_created_at = models.DateTimeField(_("points spend's time"), null=True, blank=True, editable=False)
    fee = models.BigIntegerField(_("fee (1/100 minor unit)"), default=0)
    fee_returned = models.BigIntegerField(_("fee handed back (1/100 minor unit)"), default=0)
    device_id = models.CharField(_("device id"), max_length=64, blank=True)
    risk_outcome = models.CharField(_("risk outcome"), max_length=8, choices=RiskOutcome.choices, blank=True)
    risk_reasons = models.JSONField(_("risk reasons"), default=list, blank=True)
    risk_review = models.BooleanField(
        _("held for risk review"), default=False, help_text=_("Authorised, not captured, until someone decides.")
    )
    risk_review_deadline = models.DateTimeField(_("review deadline"), null=True, blank=True)
    risk_decision = models.CharField(_("review decision"), max_length=16, choices=RiskDecision.choices, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    livemode = models.BooleanField(
        _("live mode"), default=True, help_text=_("Unticked: made with a test key, in the sandbox.")
    )
    # Set by the code, not at the insert: the services make the timed public id of the same instant.
    created_at = models.DateTimeField(_("created"), default=created_now, editable=False, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = PaymentManager()

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["merchant", "livemode", "-id"]),
            models.Index(fields=["merchant", "business_date"], name="payment_merchant_business_date"),
            # The cardholder's statement, newest first: a page of it is the first rows of this index at any depth.
            models.Index(fields=["cardholder", "-created_at", "-id"], name="payment_cardholder_statement"),
            models.Index(fields=["status", "authorization_expires_at"]),
            models.Index(fields=["risk_review", "risk_review_deadline"]),
            # Captures are written in time order: reconciliation reads a channel's day of them through a few pages
            # of BRIN index, which costs the writes next to nothing.
            BrinIndex(fields=["captured_at"], name="payment_captured_brin"),
            # The partitions job asks whether a month of ledger transactions is still named by a payment's points
            # spend (`core.partitions.referred_by`) before archiving it: only payments paid partly with points.
            models.Index(
                fields=["points_spend_created_at"],
                name="payment_points_spend_time",
                condition=Q(points_spend__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_captured__gte=0, amount_captured__lte=F("amount")), name="payment_captured_in_range"
            ),
            models.CheckConstraint(condition=Q(amount_capturable__gte=0), name="payment_capturable_non_negative"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0, amount_refunded__lte=F("amount_refund_reserved")),
                name="payment_refunded_within_reserved",
            ),
            models.CheckConstraint(
                condition=Q(amount_refund_reserved__lte=F("amount_captured")), name="payment_refunds_within_captured"
            ),
            models.CheckConstraint(
                condition=Q(
                    amount_charged_back__gte=0,
                    amount_charged_back__lte=F("amount_disputed"),
                    amount_disputed__lte=F("amount_captured") - F("amount_refund_reserved"),
                ),
                name="payment_disputes_within_captured",
            ),
            models.CheckConstraint(
                condition=Q(points_reversed__gte=0, points_reversed__lte=F("points_earned")),
                name="payment_points_reversed_within_earned",
            ),
            # The capture window (payments/windows.py): a business date from the creation's date in Asia/Shanghai to
            # CAPTURE_SPAN_DAYS after it, so that a read by business date names the months its payments are in.
            models.CheckConstraint(
                condition=Q(business_date__isnull=True)
                | Q(
                    business_date__gte=ShanghaiDate("created_at"),
                    business_date__lte=ShanghaiDate("created_at", days=CAPTURE_SPAN_DAYS),
                ),
                name="payment_business_date_in_capture_window",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class AttemptManager(models.Manager["PaymentAttempt"]):
    """Reads that name the attempts' month (the table is partitioned on `intent_created_at`), so PostgreSQL reads
    one partition."""

    def of(self, intent: PaymentIntent) -> models.QuerySet[PaymentAttempt]:
        """The intent's attempts, in its month's partition."""
        return self.filter(intent=intent, intent_created_at=intent.created_at)

    def one(self, attempt: PaymentAttempt) -> models.QuerySet[PaymentAttempt]:
        """The attempt itself (to update it), in its partition."""
        return self.filter(pk=attempt.pk, intent_created_at=attempt.intent_created_at)


class PaymentAttempt(models.Model):
    """One try at a channel. Its reference is the idempotency key the channel sees: a retry never charges twice.

    The table is partitioned by month on `intent_created_at` (docs/scaling.md, "Partitioning by month"), which is the
    intent's `created_at`, always: every path that opens an attempt sets it, and an intent's `created_at` never
    changes. A partitioned table's unique keys must hold the partition column, so the database's keys are
    `(id, intent_created_at)`, `(intent_id, sequence, intent_created_at)` and `(reference, intent_created_at)`; the
    model states the rules they keep. They mean the same: `intent_created_at` is fixed by the intent, so two attempts
    of one intent with one sequence have one `intent_created_at` and collide; and `reference` is
    `<intent's public id>-<sequence>`, so two attempts with one reference are of one intent and collide the same way.
    Ids come from the one identity sequence. Read an intent's attempts with `PaymentAttempt.objects.of(intent)`.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending (outcome not yet known)")
        AUTHORIZED = "authorized", _("authorised")
        CAPTURED = "captured", _("captured")
        DECLINED = "declined", _("declined")
        FAILED = "failed", _("failed, not charged")
        UNKNOWN = "unknown", _("unknown (timed out)")
        REVERSED = "reversed", _("reversed (冲正)")
        VOIDED = "voided", _("voided")

    UNRESOLVED = (Status.PENDING, Status.UNKNOWN)

    # The database's key is composite, (intent_id, intent_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own.
    intent = models.ForeignKey(  # led by the unique (intent, sequence): no index of its own
        PaymentIntent,
        on_delete=models.PROTECT,
        related_name="attempts",
        db_index=False,
        db_constraint=False,
        verbose_name=_("intent"),
    )
    sequence = models.PositiveSmallIntegerField(_("sequence"))
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="attempts", verbose_name=_("channel"))
    reference = models.CharField(_("reference sent to the channel"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    amount = models.BigIntegerField(_("amount"))
    currency = models.CharField(_("currency"), max_length=3)
    channel_reference = models.CharField(_("channel reference"), max_length=64, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.CharField(_("error message"), max_length=255, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    # Who acts on the attempt (the request that opened it, a capture or cancellation, the resolver) claims it until
    # then; nobody else acts on it before the claim lapses (a process that died holding it).
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    # The intent's created_at, always (see above): the month the attempt's partition is cut on.
    intent_created_at = models.DateTimeField(_("intent created"), editable=False)

    objects = AttemptManager()

    class Meta:
        verbose_name = _("payment attempt")
        verbose_name_plural = _("payment attempts")
        ordering = ("intent_id", "sequence")
        constraints = [models.UniqueConstraint(fields=["intent", "sequence"], name="attempt_sequence_unique")]
        # Attempts are written in time order: a BRIN index finds a window of them (the channel figures) for a few
        # pages of index whatever the table's size.
        indexes = [
            models.Index(fields=["status", "created_at"]),
            BrinIndex(fields=["created_at"], name="attempt_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"


class JournalCursor(models.Model):
    """Where the orphan sweep is in a channel's journal: each run reads only the journal's newer rows."""

    channel = models.OneToOneField(
        Channel, on_delete=models.CASCADE, related_name="journal_cursor", verbose_name=_("channel")
    )
    position = models.BigIntegerField(_("journal position"), default=0)
    swept_at = models.DateTimeField(_("last swept"), null=True, blank=True)

    class Meta:
        verbose_name = _("journal cursor")
        verbose_name_plural = _("journal cursors")

    def __str__(self) -> str:
        return f"{self.channel_id}@{self.position}"


class DisputeFeedCursor(models.Model):
    """Where the dispute poll is in a channel's feed of dispute notices: each run reads only the newer ones."""

    channel = models.OneToOneField(
        Channel, on_delete=models.CASCADE, related_name="dispute_feed_cursor", verbose_name=_("channel")
    )
    position = models.BigIntegerField(_("feed position"), default=0)
    polled_at = models.DateTimeField(_("last polled"), null=True, blank=True)
    error = models.CharField(_("last error"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("dispute feed cursor")
        verbose_name_plural = _("dispute feed cursors")

    def __str__(self) -> str:
        return f"{self.channel_id}@{self.position}"


class UnmatchedCharge(models.Model):
    """A charge a channel's journal shows that no attempt of ours accounts for yet: looked at again by every sweep
    until it is matched, found not charged, or reversed."""

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="unmatched_charges", verbose_name=_("channel")
    )
    reference = models.CharField(_("reference"), max_length=64)
    seen_at = models.DateTimeField(_("first seen"), auto_now_add=True)
    reason = models.CharField(_("why it is still open"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("unmatched charge")
        verbose_name_plural = _("unmatched charges")
        constraints = [models.UniqueConstraint(fields=["channel", "reference"], name="unmatched_charge_unique")]

    def __str__(self) -> str:
        return self.reference


class RefundManager(models.Manager["Refund"]):
    """Reads that name the refunds' month (the table is partitioned on `intent_created_at`, their payment's
    `created_at`), so PostgreSQL reads one partition."""

    def of(self, intent: PaymentIntent) -> models.QuerySet[Refund]:
        """The payment's refunds, in its month's partition."""
        return self.filter(intent=intent, intent_created_at=intent.created_at)

    def one(self, refund: Refund) -> models.QuerySet[Refund]:
        """The refund itself (to lock or update it), in its partition."""
        return self.filter(pk=refund.pk, intent_created_at=refund.intent_created_at)


class Refund(models.Model):
    """A payment given back, in part or whole.

    The table is partitioned by month on `intent_created_at` (docs/scaling.md, "Partitioning by month"), which is the
    payment's `created_at`, always: every path that opens a refund sets it, and a payment's `created_at` never
    changes, so a payment's refunds sit in one partition. A partitioned table's unique keys must hold the partition
    column, so the database's keys are `(id, intent_created_at)`, `(reference, intent_created_at)` and
    `(public_id, intent_created_at)`; the model states the rules they keep. They mean the same: `reference` is
    `<payment's public id>-r<n>`, so two refunds with one reference are of one payment, have one `intent_created_at`
    and collide (a refund is never sent twice under one reference); a public id is 24 random characters (`core.ids`:
    144 random bits folded onto 62 symbols, about 142 bits), so two alike are not to be expected with or without the
    month. Ids come from the one identity sequence. Fee splits, settlement lines
    and reconciliation exceptions refer to a refund by `(refund_id, payment_created_at)`. Read a payment's refunds
    with `Refund.objects.of(payment)`.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        UNKNOWN = "unknown", _("unknown (timed out)")

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "re"), editable=False
    )
    # The database's key is composite, (intent_id, intent_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own.
    intent = models.ForeignKey(
        PaymentIntent, on_delete=models.PROTECT, related_name="refunds", db_constraint=False, verbose_name=_("intent")
    )
    # The intent's merchant, always: settlement finds a chunk's refunds by (merchant, business date) instead of
    # reading every refund of the day for each chunk of merchants. Led by that index: no index of its own.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="refunds", db_index=False, verbose_name=_("merchant")
    )
    amount = models.BigIntegerField(_("amount"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(_("reason"), max_length=100, blank=True)
    reference = models.CharField(_("reference sent to the channel"), max_length=64, unique=True)
    channel_reference = models.CharField(_("channel reference"), max_length=64, blank=True)
    failure_code = models.CharField(_("failure code"), max_length=64, blank=True)
    points_reversed = models.BigIntegerField(_("points reversed"), default=0)
    promotion_cost_returned = models.BigIntegerField(
        _("promotion cost returned"),
        default=0,
        help_text=_("What this refund handed back to the payment's points promotions, which the merchant funds."),
    )
    cofunding_returned = models.BigIntegerField(
        _("co-funding returned"),
        default=0,
        help_text=_("The co-funding bank's part of the discounts this refund handed back, taken back at settlement."),
    )
    business_date = models.DateField(_("business date"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    # The payment's created_at, always (see above): the month the refund's partition is cut on.
    intent_created_at = models.DateTimeField(_("intent created"), editable=False)

    objects = RefundManager()

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["business_date"], name="refund_business_date"),  # a day's refunds (clearing)
            models.Index(fields=["merchant", "business_date"], name="refund_merchant_business_date"),  # settlement
        ]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return self.public_id


class RoutingRule(models.Model):
    """Which channels a payment may use and how to choose among them; the first enabled matching rule by priority wins.

    Empty conditions match everything. A payment that no rule matches is routed by the cheapest strategy over every
    capable channel.
    """

    class Strategy(models.TextChoices):
        FIXED = "fixed", _("fixed priority list")
        CHEAPEST = "cheapest", _("cheapest expected cost")
        SUCCESS_RATE = "success_rate", _("best success rate (ε-greedy)")
        WEIGHTED = "weighted", _("weighted split")

    name = models.CharField(_("name"), max_length=100)
    priority = models.PositiveIntegerField(_("priority"), default=100, help_text=_("Lower runs first."))
    enabled = models.BooleanField(_("enabled"), default=True)
    merchant = models.ForeignKey(
        Merchant, null=True, blank=True, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant")
    )
    merchant_category_code = models.CharField(_("merchant category code"), max_length=4, blank=True)
    amount_min = models.BigIntegerField(_("amount from (minor units)"), null=True, blank=True)
    amount_max = models.BigIntegerField(_("amount up to (minor units)"), null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    method = models.CharField(_("payment method"), max_length=16, choices=PaymentMethod.choices, blank=True)
    issuer = models.ForeignKey(
        MemberBank, null=True, blank=True, on_delete=models.CASCADE, related_name="+", verbose_name=_("issuer")
    )
    on_us = models.BooleanField(
        _("on-us only"), null=True, blank=True, help_text=_("Yes: acquirer must be the issuer. No: must differ.")
    )
    time_from = models.TimeField(_("from (local time)"), null=True, blank=True)
    time_to = models.TimeField(_("until (local time)"), null=True, blank=True)
    strategy = models.CharField(_("strategy"), max_length=16, choices=Strategy.choices, default=Strategy.CHEAPEST)
    epsilon = models.DecimalField(
        _("exploration ε"), max_digits=4, decimal_places=3, default=0, help_text=_("Share of payments that explore.")
    )
    seed = models.BigIntegerField(_("random seed"), null=True, blank=True)

    class Meta:
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")
        ordering = ("priority", "id")
        constraints = [
            models.CheckConstraint(condition=Q(epsilon__gte=0, epsilon__lte=1), name="routingrule_epsilon_0_1"),
            models.CheckConstraint(
                condition=Q(amount_min__isnull=True) | Q(amount_max__isnull=True) | Q(amount_max__gte=F("amount_min")),
                name="routingrule_amount_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.priority} {self.name}"


class RuleChannel(models.Model):
    """A channel a rule may use: its place in a fixed list, its weight in a split."""

    rule = models.ForeignKey(
        RoutingRule, on_delete=models.CASCADE, related_name="rule_channels", verbose_name=_("rule")
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+", verbose_name=_("channel"))
    position = models.PositiveSmallIntegerField(_("position"), default=1)
    weight = models.PositiveIntegerField(_("weight (%)"), default=0)

    class Meta:
        verbose_name = _("rule channel")
        verbose_name_plural = _("rule channels")
        ordering = ("rule_id", "position", "id")
        constraints = [models.UniqueConstraint(fields=["rule", "channel"], name="rulechannel_unique")]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.channel_id}"


class ChannelErrorPolicy(models.Model):
    """Whether a channel's error code may be retried on the next channel (only errors known not to have charged)."""

    channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="error_policies",
        help_text=_("Empty: applies to every channel."),
        verbose_name=_("channel"),
    )
    error_code = models.CharField(_("error code"), max_length=64)
    retry = models.BooleanField(_("retry on the next channel"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("channel error policy")
        verbose_name_plural = _("channel error policies")
        ordering = ("error_code",)
        constraints = [
            models.UniqueConstraint(fields=["channel", "error_code"], name="errorpolicy_unique"),
            models.UniqueConstraint(
                fields=["error_code"], condition=Q(channel__isnull=True), name="errorpolicy_unique_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id or '*'} {self.error_code} {'retry' if self.retry else 'stop'}"


class RoutingDecision(models.Model):
    """Why a payment went where it went: the rule, every candidate with its score or the reason it was dropped."""

    # The database's key is composite, (intent_id, intent_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own. The table is partitioned by month on
    # `intent_created_at` (payments/migrations/0050), its primary key (id, intent_created_at); the model keeps `id`.
    intent = models.ForeignKey(
        PaymentIntent, on_delete=models.CASCADE, related_name="routing_decisions", db_constraint=False,
        verbose_name=_("intent"),
    )  # fmt: skip
    # The intent's created_at, always (set with the intent): the month of the intent's partition.
    intent_created_at = models.DateTimeField(_("intent created"), editable=False)
    rule = models.ForeignKey(
        RoutingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("rule")
    )
    rule_name = models.CharField(_("rule"), max_length=100, blank=True)
    strategy = models.CharField(_("strategy"), max_length=16)
    candidates = models.JSONField(_("candidates"), default=list)
    chosen = models.JSONField(_("order chosen"), default=list)
    explored = models.BooleanField(_("explored"), default=False)
    decided_in_us = models.PositiveIntegerField(_("decision time (µs)"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("routing decision")
        verbose_name_plural = _("routing decisions")
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.intent_id} {self.strategy} → {', '.join(self.chosen)}"


# --- fees ---------------------------------------------------------------------------------------------------------


class FeeParty(models.TextChoices):
    ISSUER = "issuer", _("issuer")
    ACQUIRER = "acquirer", _("acquirer")
    CHANNEL = "channel", _("channel cost")
    ALLIANCE = "alliance", _("alliance")


class FeeSchedule(models.Model):
    """The merchant discount rate (MDR) and how the fee is shared, for a period.

    fee = amount × mdr_percent / 100 + fixed. The shares are percents of the fee and add up to 100. A schedule with no
    merchant is the default; with no method it applies to every method. The one in force at capture is used: the
    merchant's own before the default, a method's own before "any method", then the latest start.
    """

    merchant = models.ForeignKey(
        Merchant,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="fee_schedules",
        verbose_name=_("merchant"),
    )
    method = models.CharField(_("payment method"), max_length=16, choices=PaymentMethod.choices, blank=True)
    mdr_percent = models.DecimalField(_("merchant discount rate (%)"), max_digits=7, decimal_places=4)
    fixed = models.BigIntegerField(_("fixed fee (minor units)"), default=0)
    issuer_share = models.DecimalField(_("issuer share (%)"), max_digits=7, decimal_places=4)
    acquirer_share = models.DecimalField(_("acquirer share (%)"), max_digits=7, decimal_places=4)
    channel_share = models.DecimalField(_("channel cost share (%)"), max_digits=7, decimal_places=4)
    alliance_share = models.DecimalField(_("alliance share (%)"), max_digits=7, decimal_places=4)
    effective_from = models.DateTimeField(_("effective from"))
    effective_to = models.DateTimeField(_("effective until"), null=True, blank=True, help_text=_("Empty: open-ended."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("fee schedule")
        verbose_name_plural = _("fee schedules")
        ordering = ("merchant_id", "method", "-effective_from")
        constraints = [
            models.CheckConstraint(
                condition=Q(mdr_percent__gte=0, mdr_percent__lte=100, fixed__gte=0), name="feeschedule_rate_in_range"
            ),
            # That they add up to exactly 100 is checked in clean().
            models.CheckConstraint(
                condition=Q(issuer_share__gte=0, acquirer_share__gte=0, channel_share__gte=0, alliance_share__gte=0),
                name="feeschedule_shares_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                name="feeschedule_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id or '*'} {self.method or '*'} {self.mdr_percent}% from {self.effective_from:%Y-%m-%d}"

    def clean(self) -> None:
        shares = [self.issuer_share, self.acquirer_share, self.channel_share, self.alliance_share]
        if None not in shares and sum(shares, Decimal(0)) != 100:
            raise ValidationError(_("The issuer, acquirer, channel and alliance shares must add up to exactly 100 %."))
        if self.effective_from is None:
            return
        # An open-ended earlier version is closed by the service when this one is added; anything else overlapping is
        # refused.
        same_merchant = Q(merchant__isnull=True) if self.merchant_id is None else Q(merchant_id=self.merchant_id)
        others = FeeSchedule.objects.filter(same_merchant, method=self.method).exclude(pk=self.pk)
        others = others.filter(Q(effective_to__isnull=True) | Q(effective_to__gt=self.effective_from))
        if self.effective_to is not None:
            others = others.filter(effective_from__lt=self.effective_to)
        if self.pk is None:
            others = others.exclude(effective_to__isnull=True, effective_from__lt=self.effective_from)
        if others.exists():
            raise ValidationError(_("Another schedule for this merchant and method is in force during that period."))

    def shares(self) -> dict[str, Decimal]:
        return {
            FeeParty.ISSUER: self.issuer_share,
            FeeParty.ACQUIRER: self.acquirer_share,
            FeeParty.CHANNEL: self.channel_share,
            FeeParty.ALLIANCE: self.alliance_share,
        }


class FeeSplitManager(models.Manager["FeeSplit"]):
    """Reads that name the fee splits' month (the table is partitioned on `payment_created_at`, their payment's
    `created_at`), so PostgreSQL reads one partition."""

    def of(self, payment: PaymentIntent) -> models.QuerySet[FeeSplit]:
        """The payment's fee splits, in its month's partition."""
        return self.filter(payment=payment, payment_created_at=payment.created_at)


class FeeSplit(models.Model):
    """One party's part of a payment's fee, or of the part handed back on a refund or reversal.

    `amount` is in hundredths of a minor unit (0.0001 CNY), signed: positive when the fee is charged (capture),
    negative when it is handed back (refund, reversal). The rows of one event add up exactly to that event's fee.

    The table is partitioned by month on `payment_created_at` (docs/scaling.md, "Partitioning by month"), which is the
    payment's `created_at`, always: every writer sets it, and its key to the payment holds it, so a payment's splits
    sit in one partition. A partitioned table's unique keys must hold the partition column, so the database's keys
    include the month: `(id, payment_created_at)`, one capture split per `(payment, party, payment_created_at)` and
    one refund split per `(refund, party, payment_created_at)` (payments/migrations/0049); the model states the rules
    they keep. They mean the same: ids come from the one identity sequence, and the splits of one payment, or of one
    refund (which is of one payment), carry one time. Read a payment's splits with `FeeSplit.objects.of(payment)`.
    """

    class Event(models.TextChoices):
        CAPTURE = "capture", _("capture")
        REFUND = "refund", _("refund")
        REVERSAL = "reversal", _("reversal")

    # The database's key is composite, (payment_id, payment_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own.
    payment = models.ForeignKey(
        PaymentIntent, on_delete=models.PROTECT, related_name="fee_splits", db_constraint=False,
        verbose_name=_("payment"),
    )  # fmt: skip
    # The database's key is composite, (refund_id, payment_created_at) → the refund's (id, intent_created_at)
    # (payments/migrations/0043): Django makes no constraint of its own. Found by `feesplit_one_refund_per_party`,
    # which leads with the refund: no index of its own.
    refund = models.ForeignKey(
        Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="fee_splits", db_constraint=False,
        db_index=False, verbose_name=_("refund"),
    )  # fmt: skip
    # The payment's created_at, always: it names the refund's month (the refund is of this payment).
    payment_created_at = models.DateTimeField(_("intent created"), editable=False)
    schedule = models.ForeignKey(FeeSchedule, on_delete=models.PROTECT, related_name="+", verbose_name=_("schedule"))
    event = models.CharField(_("event"), max_length=16, choices=Event.choices)
    party = models.CharField(_("party"), max_length=16, choices=FeeParty.choices)
    bank = models.ForeignKey(  # led by (bank, party): no index of its own
        MemberBank, null=True, blank=True, on_delete=models.PROTECT, related_name="fee_splits", db_index=False,
        verbose_name=_("bank"),
    )  # fmt: skip
    amount = models.BigIntegerField(_("amount (1/100 minor unit)"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    objects = FeeSplitManager()

    class Meta:
        verbose_name = _("fee split")
        verbose_name_plural = _("fee splits")
        ordering = ("payment_id", "id")
        indexes = [models.Index(fields=["bank", "party"])]
        # The rules; in the database each unique index also holds `payment_created_at`, the partition column
        # (payments/migrations/0049), with the same meaning.
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "party"], condition=Q(event="capture"), name="feesplit_one_capture_per_party"
            ),
            models.UniqueConstraint(
                fields=["refund", "party"], condition=Q(refund__isnull=False), name="feesplit_one_refund_per_party"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.event} {self.party} {self.amount}"


# --- risk ---------------------------------------------------------------------------------------------------------


class RiskRule(models.Model):
    """A limit checked before routing. Empty conditions match every payment.

    amount: this payment's amount above the threshold. count / total: the number or the sum of payments of the same
    card, cardholder or merchant within the current minute, hour or (local) day, this one included, above the
    threshold. A daily cap is a `total` over a day.
    """

    class Kind(models.TextChoices):
        AMOUNT = "amount", _("single payment amount")
        COUNT = "count", _("number of payments in the window")
        TOTAL = "total", _("total amount in the window")

    class Subject(models.TextChoices):
        CARD = "card", _("per card")
        CARDHOLDER = "cardholder", _("per cardholder")
        MERCHANT = "merchant", _("per merchant")

    class Window(models.TextChoices):
        MINUTE = "minute", _("1 minute")
        HOUR = "hour", _("1 hour")
        DAY = "day", _("1 day")

    name = models.CharField(_("name"), max_length=100)
    enabled = models.BooleanField(_("enabled"), default=True)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    subject = models.CharField(_("counted per"), max_length=16, choices=Subject.choices, default=Subject.CARDHOLDER)
    window = models.CharField(_("window"), max_length=8, choices=Window.choices, default=Window.DAY)
    threshold = models.BigIntegerField(_("threshold (minor units, or a count)"))
    action = models.CharField(
        _("action"),
        max_length=8,
        choices=[(RiskOutcome.REVIEW, RiskOutcome.REVIEW.label), (RiskOutcome.BLOCK, RiskOutcome.BLOCK.label)],
        default=RiskOutcome.BLOCK,
    )
    method = models.CharField(_("payment method"), max_length=16, choices=PaymentMethod.choices, blank=True)
    card_tier = models.CharField(_("card tier"), max_length=16, choices=CardProduct.Tier.choices, blank=True)
    verification_level = models.PositiveSmallIntegerField(
        _("cardholder verification level"), choices=Cardholder.VerificationLevel.choices, null=True, blank=True
    )
    currency = models.CharField(_("currency"), max_length=3, blank=True)

    class Meta:
        verbose_name = _("risk rule")
        verbose_name_plural = _("risk rules")
        ordering = ("kind", "subject", "window", "id")
        constraints = [models.CheckConstraint(condition=Q(threshold__gte=0), name="riskrule_threshold_non_negative")]

    def __str__(self) -> str:
        return self.name


class RiskBlock(models.Model):
    """A blocked card (by fingerprint, so every binding of the number), merchant or device."""

    class Kind(models.TextChoices):
        CARD_FINGERPRINT = "card_fingerprint", _("card fingerprint")
        MERCHANT = "merchant", _("merchant code")
        DEVICE = "device", _("device id")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    value = models.CharField(_("value"), max_length=64)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("blocked item")
        verbose_name_plural = _("blocked items")
        ordering = ("kind", "value")
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="riskblock_unique")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class RiskReview(PaymentIntent):
    """The review queue: payments authorised but held until someone approves (capture) or rejects (void) them."""

    class Meta:
        proxy = True
        verbose_name = _("payment under risk review")
        verbose_name_plural = _("risk review queue")


# --- payment methods ------------------------------------------------------------------------------------------------


def _code_digits() -> str:
    # 18 digits starting 28 (the range wallets use for payment codes), the rest random.
    return "28" + "".join(secrets.choice("0123456789") for _ in range(16))


class PaymentCode(models.Model):
    """付款码: a one-time code a cardholder shows at the till: valid 60 seconds, used once, one funding source."""

    AUDIT_REDACT = ("code",)  # it pays: audit snapshots name it, never copy it

    cardholder = models.ForeignKey(  # led by (cardholder, -id): no index of its own
        Cardholder,
        on_delete=models.PROTECT,
        related_name="payment_codes",
        db_index=False,
        verbose_name=_("cardholder"),
    )
    card = models.ForeignKey(
        Card, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("card")
    )
    linked_account = models.ForeignKey(
        LinkedAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("linked account"),
    )
    code = models.CharField(_("code"), max_length=18, unique=True, default=_code_digits, editable=False)
    use_points = models.BooleanField(_("pay part with points"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used"), null=True, blank=True)
    # The payment made with the code, set in the transaction that writes it. The payment's key to the code names
    # (id, used_by_id): payments are partitioned by month, so "one payment per code" is this one row's, not a unique
    # payment column. The code has no key to the payment (the two made a cycle no month of payments could leave):
    # once the payment's month is archived, it names a row of its archive table.
    used_by = models.ForeignKey(
        PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False,
        db_index=False, db_constraint=False, verbose_name=_("payment"),
    )  # fmt: skip

    class Meta:
        verbose_name = _("payment code")
        verbose_name_plural = _("payment codes")
        ordering = ("-id",)
        indexes = [models.Index(fields=["cardholder", "-id"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(card__isnull=False, linked_account__isnull=True)
                | Q(card__isnull=True, linked_account__isnull=False),
                name="paymentcode_one_funding_source",
            )
        ]

    def __str__(self) -> str:
        return f"••••{self.code[-4:]}"

    @property
    def qr_payload(self) -> str:
        return f"mengka://pay?code={self.code}"


AGREEMENT_TOKEN_PURPOSE = "agreement-token"


def agreement_token_new() -> str:
    """A fresh agreement token, `agt_…`: shown once, only its keyed hash and a short hint are stored."""
    return public_id("agt")


def agreement_token_hash(token: str) -> str:
    """What an agreement is found by: the token's keyed hash (equal tokens match, nothing reverses it)."""
    return keyed_hash(token, purpose=AGREEMENT_TOKEN_PURPOSE)


def agreement_token_hint(token: str) -> str:
    """The token as operators and its cardholder may see it: the prefix and the last four, `agt_…x7Qa`."""
    return f"{token[:4]}…{token[-4:]}"


class AgreementLimits:
    """An agreement's limits as money, for pages (an agreement and a merchant's request for one)."""

    limit_per_payment: int
    limit_per_month: int
    currency: str

    @property
    def limit_per_payment_display(self) -> str:
        from core.money import format_minor

        return format_minor(self.limit_per_payment, self.currency)

    @property
    def limit_per_month_display(self) -> str:
        from core.money import format_minor

        return format_minor(self.limit_per_month, self.currency)


class Agreement(AgreementLimits, models.Model):
    """协议支付 / 免密: a cardholder lets one merchant charge a funding source within limits, until revoked.

    The token is shown once, when the agreement is granted; only its keyed hash (`agreement_token_hash`, what a
    payment finds the agreement by) and a hint (`agt_…x7Qa`) are stored. Used by any other merchant than the one
    granted, a token is refused as unknown.
    """

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "agr"), editable=False
    )
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True, editable=False)
    token_hint = models.CharField(_("token"), max_length=16, editable=False)
    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.PROTECT, related_name="agreements", verbose_name=_("cardholder")
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="agreements", verbose_name=_("merchant")
    )
    card = models.ForeignKey(
        Card, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("card")
    )
    linked_account = models.ForeignKey(
        LinkedAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("linked account"),
    )
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    limit_per_payment = models.BigIntegerField(_("limit per payment (minor units)"))
    limit_per_month = models.BigIntegerField(_("limit per month (minor units)"))
    created_at = models.DateTimeField(_("granted"), auto_now_add=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("agreement")
        verbose_name_plural = _("agreements")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(
                condition=Q(card__isnull=False, linked_account__isnull=True)
                | Q(card__isnull=True, linked_account__isnull=False),
                name="agreement_one_funding_source",
            ),
            models.CheckConstraint(
                condition=Q(limit_per_payment__gt=0, limit_per_month__gte=F("limit_per_payment")),
                name="agreement_limits_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


AGREEMENT_REQUEST_TTL = dt.timedelta(hours=1)


def _agreement_request_expiry() -> dt.datetime:
    return timezone.now() + AGREEMENT_REQUEST_TTL


class AgreementRequest(AgreementLimits, models.Model):
    """A merchant's request for an agreement, which the cardholder grants or declines on a page Mengka hosts.

    Pending for an hour (an expired request cannot be granted: it is found expired when read or acted on, no job
    sweeps it). Granting makes the agreement (`agreement`) and keeps its token encrypted here until the merchant
    collects it, once, from `GET /api/v1/agreements/{id}`; collecting it empties `token_encrypted`.
    """

    AUDIT_REDACT = ("token_encrypted",)  # the token, if encrypted: audit snapshots never copy it

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        GRANTED = "granted", _("granted")
        DECLINED = "declined", _("declined")
        EXPIRED = "expired", _("expired")

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "agrq"), editable=False
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="agreement_requests", verbose_name=_("merchant")
    )
    livemode = models.BooleanField(_("live mode"), default=True)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    limit_per_payment = models.BigIntegerField(_("limit per payment (minor units)"))
    limit_per_month = models.BigIntegerField(_("limit per month (minor units)"))
    purpose = models.CharField(_("purpose"), max_length=200)
    return_url = models.CharField(_("return URL"), max_length=2000)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(_("expires"), default=_agreement_request_expiry)
    agreement = models.OneToOneField(
        Agreement, null=True, blank=True, on_delete=models.PROTECT, related_name="request", verbose_name=_("agreement")
    )
    token_encrypted = models.TextField(_("token (encrypted, until collected)"), blank=True, default="", editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)

    class Meta:
        verbose_name = _("agreement request")
        verbose_name_plural = _("agreement requests")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(
                condition=Q(limit_per_payment__gt=0, limit_per_month__gte=F("limit_per_payment")),
                name="agreementrequest_limits_ordered",
            ),
            models.CheckConstraint(
                condition=Q(status="granted", agreement__isnull=False)
                | (~Q(status="granted") & Q(agreement__isnull=True, token_encrypted="")),
                name="agreementrequest_agreement_iff_granted",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def current_status(self) -> str:
        """The status as of now: a pending request past its expiry is expired, whether or not that was written."""
        if self.status == self.Status.PENDING and self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.status


# --- merchant settlement (结算) and payouts ----------------------------------------------------------------------


class ReservePolicy(models.Model):
    """The rolling reserve a merchant of a risk grade leaves with each settlement: a share of its net, released after
    a number of working days."""

    risk_grade = models.CharField(_("risk grade"), max_length=8, choices=RiskGrade.choices, unique=True)
    percent = models.DecimalField(_("reserve (%)"), max_digits=5, decimal_places=2)
    hold_working_days = models.PositiveSmallIntegerField(_("released after (working days)"))

    class Meta:
        verbose_name = _("reserve policy")
        verbose_name_plural = _("reserve policies")
        ordering = ("risk_grade",)
        constraints = [
            models.CheckConstraint(condition=Q(percent__gte=0, percent__lte=100), name="reservepolicy_percent_range")
        ]

    def __str__(self) -> str:
        return f"{self.risk_grade}: {self.percent}% for {self.hold_working_days} working days"


class SettlementBatch(models.Model):
    """What one merchant is owed for one period in one currency: unique per merchant, currency, mode and period, so
    settling a period again is a no-op. Amounts are minor units, signed; `fees` is in hundredths of a minor unit and
    rounded once, into `fee_total`.

    net = gross − refunds − fee_total − promotion_charges + cofunding_credits − dispute_debits − reserve_held
          + reserve_released + carried_in
    A negative net is carried into the merchant's next batch (`carried_out`); a frozen merchant's batch is held."""

    class Status(models.TextChoices):
        BUILDING = "building", _("building")
        SETTLED = "settled", _("settled, to pay")
        HELD = "held", _("held (merchant frozen)")
        CARRIED = "carried", _("nothing to pay (carried forward)")
        PAYING = "paying", _("payout sent")
        PAID = "paid", _("paid")
        RETURNED = "returned", _("payout returned")

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "stl"), editable=False
    )
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="settlements", verbose_name=_("merchant")
    )
    currency = models.CharField(_("currency"), max_length=3)
    livemode = models.BooleanField(_("live mode"), default=True)
    cycle = models.CharField(_("cycle"), max_length=4, choices=SettlementCycle.choices)
    period = models.CharField(
        _("period"), max_length=20, help_text=_("A business date (T+1) or a window's cut-off, 2026-12-05T14:00 (T+0).")
    )
    cutoff_at = models.DateTimeField(_("cut-off"), help_text=_("What was captured or refunded by then is in it."))
    settle_on = models.DateField(_("settlement date"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.BUILDING)
    hold_reason = models.CharField(_("why held"), max_length=200, blank=True)
    payments_count = models.PositiveIntegerField(_("payments"), default=0)
    gross = models.BigIntegerField(_("captured"), default=0)
    refunds_count = models.PositiveIntegerField(_("refunds"), default=0)
    refunds = models.BigIntegerField(_("refunded"), default=0)
    fees = models.BigIntegerField(_("fees (1/100 minor unit)"), default=0)
    fee_total = models.BigIntegerField(_("fees"), default=0)
    fee_parties = models.JSONField(
        _("fees by party"), default=dict, blank=True, help_text=_("Party → hundredths of a minor unit.")
    )
    promotion_charges = models.BigIntegerField(_("promotion charges"), default=0)
    cofunding_credits = models.BigIntegerField(_("co-funding credits"), default=0)
    dispute_debits = models.BigIntegerField(_("dispute debits"), default=0)
    reserve_held = models.BigIntegerField(_("reserve held"), default=0)
    reserve_release_on = models.DateField(_("reserve released on"), null=True, blank=True)
    reserve_released = models.BigIntegerField(_("reserve released"), default=0)
    carried_in = models.BigIntegerField(_("carried in"), default=0)
    carried_out = models.BigIntegerField(_("carried out"), default=0)
    net = models.BigIntegerField(_("net"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    settled_at = models.DateTimeField(_("settled"), null=True, blank=True)

    class Meta:
        verbose_name = _("settlement batch")
        verbose_name_plural = _("settlement batches")
        ordering = ("-settle_on", "-id")
        indexes = [
            models.Index(fields=["merchant", "livemode", "-id"], name="settlement_merchant"),
            models.Index(
                fields=["reserve_release_on"],
                name="settlement_reserve_due",
                condition=Q(reserve_held__gt=0, reserve_released=0),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "currency", "livemode", "period"], name="settlement_one_per_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.period}"


class SettlementLine(models.Model):
    """One figure of a batch and what is behind it: a captured payment, a refund, a reserve released, a negative net
    carried in, a dispute lost (its payment named too). A payment, a refund and a dispute are each in one batch only
    (unique), whichever run put it there first.

    The table is partitioned by month on `payment_created_at` (payments/migrations/0051); a line without a payment
    (a reserve released, a negative net carried in) sits in the DEFAULT partition. So the database's keys include
    the month: no primary key (its columns would be NOT NULL), `(id, payment_created_at)` unique NULLS NOT DISTINCT,
    and the rules below as `(payment, payment_created_at)`, `(refund, payment_created_at)`, `(dispute,
    payment_created_at)` and `(source, kind, payment_created_at)` NULLS NOT DISTINCT. They mean the same: a line's
    month is its payment's (a key), a refund's line names the refund's payment (a key), a dispute's line names a
    payment whose month is the dispute's payment's (a check and a key), and a line with a source names no payment
    (a check), so its month is always empty. The model keeps `id` as its primary key and states the rules."""

    class Kind(models.TextChoices):
        PAYMENT = "payment", _("payment")
        REFUND = "refund", _("refund")
        RESERVE_RELEASE = "reserve_release", _("reserve released")
        CARRIED = "carried", _("carried in")
        DISPUTE = "dispute", _("dispute debit")

    batch = models.ForeignKey(
        SettlementBatch, on_delete=models.CASCADE, related_name="lines", db_index=False, verbose_name=_("batch")
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    # The database's key is composite, (payment_id, payment_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own.
    payment = models.ForeignKey(
        PaymentIntent,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("payment"),
    )
    # The database's key is composite, (refund_id, payment_created_at) → the refund's (id, intent_created_at)
    # (payments/migrations/0043): Django makes no constraint of its own.
    refund = models.ForeignKey(
        Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        db_constraint=False, verbose_name=_("refund"),
    )  # fmt: skip
    # The payment's created_at when the line has a payment (a refund's line names the refund's payment): it names the
    # refund's month.
    payment_created_at = models.DateTimeField(_("intent created"), null=True, blank=True, editable=False)
    # The database's key is composite, (dispute_id, payment_created_at) → the dispute's (id, payment_created_at)
    # (payments/migrations/0051): Django makes no constraint of its own.
    dispute = models.ForeignKey(
        "Dispute", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        db_constraint=False, verbose_name=_("dispute"),
    )  # fmt: skip
    source = models.ForeignKey(
        SettlementBatch,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        verbose_name=_("earlier batch"),
        help_text=_("The batch whose reserve is released or whose negative net is carried in."),
    )
    amount = models.BigIntegerField(_("amount"), help_text=_("Signed: a refund is negative."))
    fee = models.BigIntegerField(
        _("fee (1/100 minor unit)"), default=0, help_text=_("Signed: handed back is negative.")
    )
    promotion_charge = models.BigIntegerField(_("promotion charge"), default=0)
    cofunding_credit = models.BigIntegerField(_("co-funding credit"), default=0)

    class Meta:
        verbose_name = _("settlement line")
        verbose_name_plural = _("settlement lines")
        ordering = ("batch_id", "id")
        indexes = [models.Index(fields=["batch", "id"], name="settlementline_batch")]
        constraints = [
            models.UniqueConstraint(
                fields=["payment"], condition=Q(kind="payment"), name="settlementline_payment_once"
            ),
            models.UniqueConstraint(fields=["refund"], condition=Q(kind="refund"), name="settlementline_refund_once"),
            models.UniqueConstraint(
                fields=["dispute"], condition=Q(kind="dispute"), name="settlementline_dispute_once"
            ),
            models.UniqueConstraint(
                fields=["source", "kind"], condition=Q(source__isnull=False), name="settlementline_source_once"
            ),
            # The payment's month is there exactly when the payment is, and a refund's line names its payment: the
            # key to the refund, (refund, payment_created_at), is never left unchecked by a NULL month.
            models.CheckConstraint(
                condition=Q(payment__isnull=True, payment_created_at__isnull=True, refund__isnull=True)
                | Q(payment__isnull=False, payment_created_at__isnull=False),
                name="settlementline_payment_month",
            ),
            # A dispute's line names the payment (the dispute's: the key to the dispute holds its month), a reserve's
            # or carried net's names none: the unique keys that hold the month keep the rules' meaning.
            models.CheckConstraint(
                condition=Q(dispute__isnull=True) | Q(payment__isnull=False), name="settlementline_dispute_payment"
            ),
            models.CheckConstraint(
                condition=Q(source__isnull=True) | Q(payment__isnull=True), name="settlementline_source_no_payment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} {self.kind} {self.amount}"


class SplitInstruction(models.Model):
    """分账: what the acquirer of record pays each party out of a batch's funds — the merchant its net, each member
    bank and the alliance their fee shares. Mengka instructs; the acquirer carries the money."""

    class Party(models.TextChoices):
        MERCHANT = "merchant", _("merchant")
        ISSUER = "issuer", _("issuer")
        ACQUIRER = "acquirer", _("acquirer")
        CHANNEL = "channel", _("channel cost")
        ALLIANCE = "alliance", _("alliance")
        RESERVE = "reserve", _("merchant's reserve")

    batch = models.ForeignKey(SettlementBatch, on_delete=models.CASCADE, related_name="splits", verbose_name=_("batch"))
    acquirer = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, related_name="+", verbose_name=_("acquirer of record")
    )
    party = models.CharField(_("party"), max_length=16, choices=Party.choices)
    bank = models.ForeignKey(
        MemberBank, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("bank")
    )
    amount = models.BigIntegerField(_("amount (1/100 minor unit)"))

    class Meta:
        verbose_name = _("split instruction")
        verbose_name_plural = _("split instructions")
        ordering = ("batch_id", "id")

    def __str__(self) -> str:
        return f"{self.batch_id} {self.party} {self.amount}"


class Payout(models.Model):
    """A batch's net sent to the merchant's settlement account through its sponsor's licensed channel (no 二清): sent
    under our `reference`, which the channel answers once, so a retry after a timeout never pays twice.

    pending_approval → ready → sent → paid / returned; a returned payout's money goes back to the merchant's
    balance and is sent again (a new payout) once the account is fixed or the return is flagged."""

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval", _("awaiting a second operator")
        READY = "ready", _("ready to send")
        SENT = "sent", _("sent, awaiting the result")
        PAID = "paid", _("paid")
        RETURNED = "returned", _("returned")
        CANCELLED = "cancelled", _("cancelled")

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "po"), editable=False
    )
    batch = models.ForeignKey(
        SettlementBatch, on_delete=models.PROTECT, related_name="payouts", verbose_name=_("batch")
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payouts", verbose_name=_("merchant"))
    amount = models.BigIntegerField(_("amount"))
    currency = models.CharField(_("currency"), max_length=3)
    reference = models.CharField(_("reference sent to the channel"), max_length=64, unique=True)
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("channel")
    )
    account_last4 = models.CharField(_("account, last four"), max_length=4, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.READY)
    return_reason = models.CharField(_("return reason"), max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(_("sends"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("payout")
        verbose_name_plural = _("payouts")
        ordering = ("-id",)
        permissions = [("release_payout", "Can request and approve a payout's release")]
        indexes = [models.Index(fields=["status", "sent_at"], name="payout_status")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
            # One payout of a batch at a time in flight or paid; a returned one may be followed by another.
            models.UniqueConstraint(
                fields=["batch"],
                condition=Q(status__in=["pending_approval", "ready", "sent", "paid"]),
                name="payout_one_live_per_batch",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.amount} {self.currency} ({self.status})"


# --- reconciliation (对账) ------------------------------------------------------------------------------------------


class StatementImport(models.Model):
    """One statement file of a channel for one business date (the channel's own date), as received and matched.

    The same file again (same SHA-256) is the same import; a different file for the same day supersedes the one
    before it. The file's rows are loaded by COPY into a staging table of the import's own and matched there;
    `summary` holds the match's counts and amounts per class."""

    class Status(models.TextChoices):
        MATCHED = "matched", _("imported and matched")
        SUPERSEDED = "superseded", _("superseded by a later file")
        FAILED = "failed", _("refused (unreadable)")

    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, related_name="statement_imports", verbose_name=_("channel")
    )
    business_date = models.DateField(_("business date"))
    sha256 = models.CharField(_("file SHA-256"), max_length=64)
    format = models.CharField(_("format"), max_length=12, choices=StatementFormat.choices)
    rows = models.PositiveIntegerField(_("rows"), default=0)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.MATCHED)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    matched_at = models.DateTimeField(_("matched"), null=True, blank=True)
    errors = models.JSONField(_("errors and warnings"), default=list, blank=True)
    summary = models.JSONField(
        _("summary"), default=dict, blank=True, help_text=_("Per class: the number of rows and their amounts.")
    )

    class Meta:
        verbose_name = _("statement import")
        verbose_name_plural = _("statement imports")
        ordering = ("-business_date", "channel_id", "-id")
        constraints = [
            models.UniqueConstraint(fields=["channel", "business_date", "sha256"], name="statement_import_once"),
            models.UniqueConstraint(
                fields=["channel", "business_date"], condition=Q(status="matched"), name="statement_import_current"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.business_date} {self.sha256[:12]}"


class ReconClass(models.TextChoices):
    MATCHED = "matched", _("matched")
    MISSING_AT_CHANNEL = "missing_at_channel", _("missing at the channel")
    MISSING_WITH_US = "missing_with_us", _("missing with us")
    AMOUNT_MISMATCH = "amount_mismatch", _("amount mismatch")
    STATUS_MISMATCH = "status_mismatch", _("status mismatch")
    DUPLICATE = "duplicate", _("duplicate")
    STATEMENT_LATE = "statement_late", _("statement late")
    DISPUTE_MISSING = "dispute_missing", _("dispute missing with us")


class ReconciliationException(models.Model):
    """One problem a statement shows (or its absence: a late file), in the operators' queue until someone acts.

    `key` names the problem independently of the file it came from (channel, day, class, type, reference), so a
    re-import or a corrected file finds the same row instead of adding one. While open, a contradicted payment or
    refund (`holds_settlement`) is kept out of settlement batches.

    The table is partitioned by month on `payment_created_at` (payments/migrations/0054); an exception without a
    payment (a channel's row we lack, a payout's, a late statement) sits in the DEFAULT partition. So the database's
    keys include the month: no primary key (its columns would be NOT NULL), and `(id, payment_created_at)`,
    `(public_id, payment_created_at)` and `(key, payment_created_at)` unique NULLS NOT DISTINCT. They keep the rules:
    one key always comes with one month (the class decides whether there is a payment and the row names it;
    reconciliation's writes that could name another keep or move the row, see the migration). The model keeps `id`
    as its primary key and `public_id` and `key` unique as the rules."""

    class Status(models.TextChoices):
        OPEN = "open", _("open")
        RESOLVED = "resolved", _("resolved")
        SUPERSEDED = "superseded", _("cleared by a corrected statement")

    class Resolution(models.TextChoices):
        NONE = "", _("none")
        ACCEPT_CHANNEL = "accept_channel", _("the channel's view accepted")
        ACCEPT_OURS = "accept_ours", _("ours kept, flagged for the channel")
        WRITE_OFF = "write_off", _("written off")
        REINQUIRY = "reinquiry", _("the channel agrees on inquiry")

    OPEN_STATUSES = (Status.OPEN,)

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "rex"), editable=False
    )
    key = models.CharField(_("key"), max_length=200, unique=True)
    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, related_name="recon_exceptions", db_index=False, verbose_name=_("channel")
    )
    business_date = models.DateField(_("business date"))
    statement = models.ForeignKey(
        StatementImport,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exceptions",
        db_index=False,
        verbose_name=_("statement"),
        help_text=_("The latest file that showed it."),
    )
    kind = models.CharField(_("class"), max_length=20, choices=ReconClass.choices)
    txn_kind = models.CharField(_("type"), max_length=16, blank=True)
    reference = models.CharField(_("our reference"), max_length=64, blank=True)
    channel_txn_id = models.CharField(_("channel transaction id"), max_length=64, blank=True)
    # The database's key is composite, (payment_id, payment_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own.
    payment = models.ForeignKey(
        PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        db_constraint=False, verbose_name=_("payment"),
    )  # fmt: skip
    # The database's key is composite, (refund_id, payment_created_at) → the refund's (id, intent_created_at)
    # (payments/migrations/0043): Django makes no constraint of its own.
    refund = models.ForeignKey(
        Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        db_constraint=False, verbose_name=_("refund"),
    )  # fmt: skip
    # The payment's created_at when the exception names a payment (one naming a refund names its payment too): it
    # names the refund's month.
    payment_created_at = models.DateTimeField(_("intent created"), null=True, blank=True, editable=False)
    payout = models.ForeignKey(
        Payout, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        verbose_name=_("payout"),
    )  # fmt: skip
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    our_amount = models.BigIntegerField(_("our amount"), null=True, blank=True)
    channel_amount = models.BigIntegerField(_("channel's amount"), null=True, blank=True)
    our_status = models.CharField(_("our status"), max_length=12, blank=True)
    channel_status = models.CharField(_("channel's status"), max_length=12, blank=True)
    copies = models.PositiveIntegerField(_("copies on the statement"), default=0)
    holds_settlement = models.BooleanField(
        _("holds settlement"),
        default=False,
        help_text=_("While open, its payment or refund is kept out of settlement batches."),
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.OPEN)
    resolution = models.CharField(
        _("resolution"), max_length=16, choices=Resolution.choices, blank=True, default=Resolution.NONE
    )
    note = models.TextField(_("note"), blank=True)
    write_off_amount = models.BigIntegerField(_("write-off (minor units)"), null=True, blank=True)
    write_off_transaction = models.ForeignKey(  # (…_id, write_off_transaction_created_at) in the database
        "rewards.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        db_index=False, db_constraint=False, verbose_name=_("write-off posting"),
    )  # fmt: skip
    write_off_transaction_created_at = models.DateTimeField(
        _("write-off posting's time"), null=True, blank=True, editable=False
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("resolved by"),
    )  # fmt: skip
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    created_at = models.DateTimeField(_("raised"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("reconciliation exception")
        verbose_name_plural = _("reconciliation exceptions")
        ordering = ("-business_date", "-id")
        # As a settlement line's: the payment's month is there exactly when the payment is (see SettlementLine).
        constraints = [
            models.CheckConstraint(
                condition=Q(payment__isnull=True, payment_created_at__isnull=True, refund__isnull=True)
                | Q(payment__isnull=False, payment_created_at__isnull=False),
                name="recon_exception_payment_month",
            ),
        ]
        indexes = [
            models.Index(fields=["channel", "business_date", "status"], name="recon_exception_day"),
            # Settlement asks, per payment and refund, whether an open exception holds it: tiny partial indexes.
            models.Index(
                fields=["payment"], name="recon_exception_holds_payment",
                condition=Q(holds_settlement=True, payment__isnull=False),
            ),
            models.Index(
                fields=["refund"], name="recon_exception_holds_refund",
                condition=Q(holds_settlement=True, refund__isnull=False),
            ),
            # Settlement's catch-up: what such an exception held, once released, enters the next batch.
            models.Index(
                fields=["resolved_at"], name="recon_exception_released",
                condition=Q(holds_settlement=True, status__in=["resolved", "superseded"]),
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} {self.reference or self.channel_txn_id}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class StatementFetch(models.Model):
    """The fetch of a channel's statement for a day: tried after the channel's cut-off, again with back-off while
    the channel answers that the file is not ready, until the limit (then a `statement_late` exception)."""

    class Status(models.TextChoices):
        WAITING = "waiting", _("waiting for the file")
        FETCHED = "fetched", _("fetched")
        LATE = "late", _("late: gave up waiting")

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="statement_fetches", verbose_name=_("channel")
    )
    business_date = models.DateField(_("business date"))
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.WAITING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("statement fetch")
        verbose_name_plural = _("statement fetches")
        ordering = ("-business_date", "channel_id")
        constraints = [
            models.UniqueConstraint(fields=["channel", "business_date"], name="statement_fetch_once"),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.business_date} {self.status}"


# --- disputes (差错, 调单, 拒付) -------------------------------------------------------------------------------------


class DisputeKind(models.TextChoices):
    RETRIEVAL = "retrieval", _("retrieval request (调单)")
    CHARGEBACK = "chargeback", _("chargeback (拒付)")
    ERROR_ADJUSTMENT = "error_adjustment", _("error adjustment (差错)")


class Dispute(models.Model):
    """A channel's (or an operator's) challenge of a captured payment, answered by the merchant before `respond_by`.

    open → evidence_submitted → won / lost / accepted / expired. A chargeback or an error adjustment reserves its
    amount on the payment (`amount_disputed`) while open, holds the payment out of settlement while it is not settled
    yet, and, lost, accepted or expired, debits the merchant's next settlement (a `dispute` line) and reverses the
    payment's points and promotions as a refund of its amount would. A retrieval request carries no money.

    The table is partitioned by month on `payment_created_at`, its payment's `created_at` (payments/migrations/0055),
    so the database's keys hold the month: `(id, payment_created_at)` (the primary key, which settlement lines and
    evidence refer to), `(public_id, payment_created_at)` and `(channel, channel_reference, payment_created_at)`. They
    mean the same: ids come from one identity sequence, a public id carries at least 128 random bits, and a channel's
    reference names one dispute of one payment, so its month is fixed. The model keeps `id` as its primary key and
    states the rules."""

    class Status(models.TextChoices):
        OPEN = "open", _("open, awaiting the merchant")
        EVIDENCE_SUBMITTED = "evidence_submitted", _("evidence submitted")
        WON = "won", _("won")
        LOST = "lost", _("lost")
        ACCEPTED = "accepted", _("accepted by the merchant")
        EXPIRED = "expired", _("expired (no answer in time)")

    class OpenedBy(models.TextChoices):
        CHANNEL = "channel", _("channel")
        OPERATOR = "operator", _("operator")

    OPEN_STATUSES = (Status.OPEN, Status.EVIDENCE_SUBMITTED)
    DEBITED_STATUSES = (Status.LOST, Status.ACCEPTED, Status.EXPIRED)

    public_id = models.CharField(
        _("id"), max_length=40, unique=True, default=functools.partial(public_id, "dp"), editable=False
    )
    # The database's key is composite, (payment_id, payment_created_at) → the payment's (id, created_at), ON UPDATE
    # CASCADE (payments/migrations/0047): Django makes no constraint of its own.
    payment = models.ForeignKey(
        PaymentIntent, on_delete=models.PROTECT, related_name="disputes", db_constraint=False,
        verbose_name=_("payment"),
    )  # fmt: skip
    # The payment's created_at, always (set with the payment): the month of the payment's partition, and the
    # dispute's own.
    payment_created_at = models.DateTimeField(_("intent created"), editable=False)
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="+", db_index=False, verbose_name=_("merchant")
    )
    livemode = models.BooleanField(_("live mode"), default=True)
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
        verbose_name=_("channel"),
    )  # fmt: skip
    kind = models.CharField(_("kind"), max_length=16, choices=DisputeKind.choices)
    reason_code = models.CharField(_("reason code"), max_length=16, blank=True)
    amount = models.BigIntegerField(_("amount"), help_text=_("Minor units; none for a retrieval request."))
    currency = models.CharField(_("currency"), max_length=3)
    opened_by = models.CharField(_("opened by"), max_length=8, choices=OpenedBy.choices)
    opened_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("opened by operator"),
    )  # fmt: skip
    channel_reference = models.CharField(_("channel reference"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.OPEN)
    respond_by = models.DateField(
        _("respond by"), help_text=_("The last working day (Asia/Shanghai) an answer reaches the channel in time.")
    )
    holds_settlement = models.BooleanField(
        _("holds settlement"),
        default=False,
        help_text=_("While open, its payment (not settled when it was opened) is kept out of settlement batches."),
    )
    answered_at = models.DateTimeField(_("answer sent"), null=True, blank=True)
    answer_error = models.CharField(_("last answer error"), max_length=200, blank=True)
    outcome_note = models.CharField(_("outcome note"), max_length=200, blank=True)
    points_reversed = models.BigIntegerField(_("points reversed"), default=0)
    promotion_cost_returned = models.BigIntegerField(_("promotion cost returned"), default=0)
    cofunding_returned = models.BigIntegerField(_("co-funding returned"), default=0)
    created_at = models.DateTimeField(_("opened"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["merchant", "livemode", "-id"], name="dispute_merchant"),
            models.Index(
                fields=["respond_by"], name="dispute_open_due",
                condition=Q(status__in=["open", "evidence_submitted"]),
            ),
            # Settlement: the open ones that hold a payment, and the closed money-bearing ones still to debit.
            models.Index(fields=["payment"], name="dispute_holds_payment", condition=Q(holds_settlement=True)),
            models.Index(
                fields=["closed_at"], name="dispute_debit_due",
                condition=Q(status__in=["lost", "accepted", "expired"]) & ~Q(kind="retrieval"),
            ),
        ]  # fmt: skip
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="dispute_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(kind="retrieval") | Q(amount__gt=0), name="dispute_money_amount_positive"
            ),
            models.UniqueConstraint(
                fields=["channel", "channel_reference"],
                condition=~Q(channel_reference=""),
                name="dispute_channel_reference_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def carries_money(self) -> bool:
        return self.kind != DisputeKind.RETRIEVAL


class PrivateEvidenceStorage(FileSystemStorage):
    """Files under DISPUTE_EVIDENCE_ROOT (read at each use), with no URL: nothing serves them; the admin streams them
    to authorised operators."""

    @property  # type: ignore[override]
    def base_location(self) -> str:
        return str(settings.DISPUTE_EVIDENCE_ROOT)

    @property  # type: ignore[override]
    def location(self) -> str:
        return os.path.abspath(self.base_location)

    @property  # type: ignore[override]
    def base_url(self) -> None:  # type: ignore[override]
        return None


def _evidence_storage() -> FileSystemStorage:
    return PrivateEvidenceStorage()


def _evidence_path(instance: DisputeEvidence, filename: str) -> str:
    return f"{instance.dispute.public_id}/{secrets.token_hex(8)}-{filename}"


class DisputeEvidence(models.Model):
    """What the merchant sent in answer to a dispute: a text, or one file (PDF, PNG or JPEG, checked by content),
    stored in private storage, never served publicly; operators of the dispute's banks download it through the
    admin.

    The table is partitioned by month on `dispute_payment_created_at`, its dispute's payment's `created_at`
    (payments/migrations/0055): its primary key is `(id, dispute_payment_created_at)` (ids come from one identity
    sequence), and the model keeps `id`."""

    # The database's key is composite, (dispute_id, dispute_payment_created_at) → the dispute's (id,
    # payment_created_at), ON UPDATE CASCADE (payments/migrations/0055): Django makes no constraint of its own.
    dispute = models.ForeignKey(
        Dispute, on_delete=models.PROTECT, related_name="evidence", db_constraint=False, verbose_name=_("dispute")
    )
    # The dispute's payment_created_at, always (set with the dispute): the month of its dispute's partition.
    dispute_payment_created_at = models.DateTimeField(_("dispute's payment created"), editable=False)
    text = models.TextField(_("text"), blank=True)
    file = models.FileField(_("file"), storage=_evidence_storage, upload_to=_evidence_path, max_length=200, blank=True)
    filename = models.CharField(_("file name"), max_length=100, blank=True)
    content_type = models.CharField(_("content type"), max_length=32, blank=True)
    size = models.PositiveIntegerField(_("size (bytes)"), default=0)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    submitted_by = models.CharField(_("submitted by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("submitted"), default=timezone.now)

    class Meta:
        verbose_name = _("dispute evidence")
        verbose_name_plural = _("dispute evidence")
        ordering = ("dispute_id", "id")

    def __str__(self) -> str:
        return self.filename or str(_("text"))
