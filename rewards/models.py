"""The unified points ledger: accounts, transactions, immutable entries, lots, holds, seals, adjustment requests.

Amounts are signed 64-bit integers. For a points unit (a program's `unit_code`) one unit is one point; for a currency
unit ("CNY") one unit is one ten-thousandth (CNY 1 = 10000), so obligations carry four decimal places. A positive entry
credits the account (raises its balance), a negative one debits it; the entries of a transaction sum to zero per unit.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from members.models import Cardholder, MemberBank, PointsProgram

CURRENCY_SCALE = 10_000  # currency units are stored in ten-thousandths


class OwnerKind(models.TextChoices):
    CARDHOLDER = "cardholder", _("cardholder")
    BANK = "bank", _("bank")
    MERCHANT = "merchant", _("merchant")
    ALLIANCE = "alliance", _("alliance")


class Purpose(models.TextChoices):
    POINTS = "points", _("points wallet")
    DEBT = "debt", _("points debt")
    ISSUANCE = "issuance", _("points issued")
    REDEMPTION = "redemption", _("points redeemed")
    BREAKAGE = "breakage", _("points expired")
    EXCHANGE = "exchange", _("points exchanged out")
    CLEARING = "clearing", _("inter-party clearing")
    FEES = "fees", _("alliance fees")


class Account(models.Model):
    """One balance of one owner in one unit. Hot bank accounts are split into `shard` sub-accounts."""

    owner_kind = models.CharField(_("owner kind"), max_length=16, choices=OwnerKind.choices)
    owner_id = models.BigIntegerField(_("owner id"))
    purpose = models.CharField(_("purpose"), max_length=16, choices=Purpose.choices)
    unit = models.CharField(_("unit"), max_length=24)
    program = models.ForeignKey(
        PointsProgram, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("program")
    )
    bank = models.ForeignKey(
        MemberBank,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("The bank this account belongs to for scoping; empty for alliance accounts."),
        verbose_name=_("bank"),
    )
    shard = models.PositiveSmallIntegerField(_("sub-account"), default=0)
    may_go_negative = models.BooleanField(_("may go negative"), default=False)
    posted = models.BigIntegerField(_("posted balance"), default=0)
    held = models.BigIntegerField(_("held"), default=0)
    version = models.BigIntegerField(_("version"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(
                fields=["owner_kind", "owner_id", "purpose", "unit", "shard"], name="ledger_account_unique_owner_unit"
            ),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="ledger_account_held_non_negative"),
            models.CheckConstraint(
                condition=models.Q(may_go_negative=True) | models.Q(posted__gte=models.F("held")),
                name="ledger_account_available_non_negative",
            ),
            models.CheckConstraint(
                condition=~models.Q(purpose="debt") | models.Q(posted__lte=0), name="ledger_account_debt_not_positive"
            ),
        ]

    def __str__(self) -> str:
        shard = f"/{self.shard}" if self.shard else ""
        return f"{self.owner_kind}:{self.owner_id} {self.purpose}{shard} [{self.unit}]"

    @property
    def available(self) -> int:
        return self.posted - self.held


SEAL_VERSION = 2  # what a seal covers: see rewards/sealing.py; older seals keep and verify by their own version


class Seal(models.Model):
    """A batch of transactions sealed into the hash chain; `signature` is made with a key outside the database."""

    version = models.PositiveSmallIntegerField(_("version"), default=SEAL_VERSION)
    previous_hash = models.CharField(_("previous hash"), max_length=64)
    content_hash = models.CharField(_("content hash"), max_length=64)
    hash = models.CharField(_("hash"), max_length=64, unique=True)
    signature = models.CharField(_("signature"), max_length=128)
    transaction_count = models.PositiveIntegerField(_("transactions"))
    entry_count = models.PositiveIntegerField(_("entries"))
    first_transaction_id = models.BigIntegerField(_("first transaction"))
    last_transaction_id = models.BigIntegerField(_("last transaction"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger seal")
        verbose_name_plural = _("ledger seals")
        ordering = ("id",)
        constraints = [
            # One seal follows each seal: two sealers can never both extend the same head (a fork).
            models.UniqueConstraint(fields=["previous_hash"], name="ledger_seal_chain_no_fork"),
        ]

    def __str__(self) -> str:
        return f"seal {self.pk} {self.hash[:12]}"


class LedgerTransaction(models.Model):
    class Kind(models.TextChoices):
        EARN = "earn", _("earn")
        EARN_BATCH = "earn_batch", _("earn (batch)")
        SPEND = "spend", _("spend")
        HOLD_POST = "hold_post", _("hold posted")
        EXCHANGE = "exchange", _("exchange")
        REVERSAL = "reversal", _("reversal")
        ADJUST = "adjust", _("adjustment")
        EXPIRE = "expire", _("expiry")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    request_hash = models.CharField(_("request hash"), max_length=64)
    points = models.BigIntegerField(_("principal points"), default=0)
    reversed_points = models.BigIntegerField(_("points reversed so far"), default=0)
    reverses = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversals",
        verbose_name=_("reverses"),
        db_index=False,  # a partial index below: most transactions reverse nothing
    )
    rate = models.DecimalField(_("exchange rate"), max_digits=20, decimal_places=10, null=True, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        verbose_name=_("actor"),
    )
    actor_label = models.CharField(_("acting"), max_length=150, default="system")
    seal = models.ForeignKey(
        Seal, on_delete=models.PROTECT, null=True, blank=True, related_name="transactions", verbose_name=_("seal")
    )
    seal_digest = models.CharField(
        _("sealed digest"),
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text=_("The hash of this transaction's rows when it was sealed (seal version 2), to name an edited one."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger transaction")
        verbose_name_plural = _("ledger transactions")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(condition=models.Q(points__gte=0), name="ledger_txn_points_non_negative"),
            models.CheckConstraint(
                condition=models.Q(reversed_points__gte=0, reversed_points__lte=models.F("points")),
                name="ledger_txn_reversed_within_points",
            ),
        ]
        indexes = [
            models.Index(fields=["id"], name="ledger_txn_unsealed", condition=models.Q(seal__isnull=True)),
            models.Index(fields=["reverses"], name="ledger_txn_reverses", condition=models.Q(reverses__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.idempotency_key}"


class Entry(models.Model):
    """Immutable. `balance_after` is the account's posted balance right after this entry (the running balance)."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries", verbose_name=_("transaction")
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_index=False, verbose_name=_("account")
    )
    unit = models.CharField(_("unit"), max_length=24)
    amount = models.BigIntegerField(_("amount"))
    balance_after = models.BigIntegerField(_("balance after"))

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        ordering = ("id",)
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_entry_amount_not_zero")]
        indexes = [models.Index(fields=["account", "id"], name="ledger_entry_account_id")]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.unit} → account {self.account_id}"


class Lot(models.Model):
    """Points earned together, spent soonest-expiry first. remaining = amount + sum of its movements."""

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="lots", db_index=False, verbose_name=_("account")
    )
    program = models.ForeignKey(
        PointsProgram, on_delete=models.PROTECT, related_name="+", db_index=False, verbose_name=_("program")
    )
    earned_by = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="lots", verbose_name=_("earned by")
    )
    amount = models.BigIntegerField(_("earned"))
    remaining = models.BigIntegerField(_("remaining"))
    earned_on = models.DateField(_("earned on"))
    expires_on = models.DateField(_("expires on"))

    class Meta:
        verbose_name = _("points lot")
        verbose_name_plural = _("points lots")
        ordering = ("expires_on", "id")
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="ledger_lot_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0, remaining__lte=models.F("amount")),
                name="ledger_lot_remaining_within_amount",
            ),
        ]
        indexes = [
            models.Index(
                fields=["account", "expires_on", "id"],
                name="ledger_lot_open",
                condition=models.Q(remaining__gt=0),
            ),
            models.Index(fields=["expires_on"], name="ledger_lot_expiry", condition=models.Q(remaining__gt=0)),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount} until {self.expires_on}"


class LotMovement(models.Model):
    """Which transaction took points from (negative) or returned points to (positive) which lot."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="lot_movements", verbose_name=_("transaction")
    )
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="movements", verbose_name=_("lot"))
    amount = models.BigIntegerField(_("amount"))

    class Meta:
        verbose_name = _("lot movement")
        verbose_name_plural = _("lot movements")
        ordering = ("id",)
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_lot_movement_not_zero")]

    def __str__(self) -> str:
        return f"{self.amount:+d} on lot {self.lot_id}"


class Hold(models.Model):
    """Two-phase: pending → posted (fully or partly, the rest released), voided, or expired."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        POSTED = "posted", _("posted")
        VOIDED = "voided", _("voided")
        EXPIRED = "expired", _("expired")

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds", verbose_name=_("account"))
    amount = models.BigIntegerField(_("amount"))
    posted_amount = models.BigIntegerField(_("posted amount"), default=0)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    request_hash = models.CharField(_("request hash"), max_length=64)
    expires_at = models.DateTimeField(_("expires at"))
    transaction = models.OneToOneField(
        LedgerTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="hold",
        verbose_name=_("transaction"),
    )
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        verbose_name = _("points hold")
        verbose_name_plural = _("points holds")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="ledger_hold_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(posted_amount__gte=0, posted_amount__lte=models.F("amount")),
                name="ledger_hold_posted_within_amount",
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="ledger_hold_pending", condition=models.Q(status="pending"))
        ]

    def __str__(self) -> str:
        return f"hold {self.pk}: {self.amount} ({self.status})"


class AdjustmentRequest(models.Model):
    """An operator's points adjustment; posted only once a different operator approves it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending approval")
        POSTED = "posted", _("approved and posted")
        REJECTED = "rejected", _("rejected")

    cardholder = models.ForeignKey(Cardholder, on_delete=models.PROTECT, related_name="+", verbose_name=_("cardholder"))
    program = models.ForeignKey(PointsProgram, on_delete=models.PROTECT, related_name="+", verbose_name=_("program"))
    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="+", verbose_name=_("bank"))
    amount = models.BigIntegerField(_("points (signed)"))
    reason = models.TextField(_("reason"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("requested by")
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    transaction = models.OneToOneField(
        LedgerTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="adjustment_request",
        verbose_name=_("transaction"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)

    class Meta:
        verbose_name = _("points adjustment request")
        verbose_name_plural = _("points adjustment requests")
        ordering = ("-id",)
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_adjustment_not_zero")]

    def __str__(self) -> str:
        return f"adjustment {self.pk}: {self.amount:+d} ({self.status})"


class ExchangePolicy(models.Model):
    """One version of the alliance's terms for exchanging points between programmes. The version in force is the one
    with the latest `effective_from` not after now; a version in force is never edited or deleted (a change is a new
    version), so every exchange can be explained by the terms of its time."""

    fee_rate = models.DecimalField(
        _("exchange fee rate"),
        max_digits=6,
        decimal_places=4,
        help_text=_("The alliance's share of what the points are worth, e.g. 0.02 for 2%."),
    )
    minimum_points = models.PositiveIntegerField(
        _("minimum points"), help_text=_("The fewest points one exchange may take out of a programme.")
    )
    effective_from = models.DateTimeField(_("effective from"), unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
        help_text=_("Empty for the first version, set when the ledger was installed."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("exchange policy")
        verbose_name_plural = _("exchange policies")
        ordering = ("-effective_from",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(fee_rate__gte=0, fee_rate__lt=1), name="exchange_policy_fee_rate_range"
            ),
            models.CheckConstraint(condition=models.Q(minimum_points__gte=1), name="exchange_policy_minimum_positive"),
        ]

    def __str__(self) -> str:
        starts = f"{self.effective_from:%Y-%m-%d %H:%M}"
        return f"exchange policy from {starts}: fee {self.fee_rate}, minimum {self.minimum_points}"
