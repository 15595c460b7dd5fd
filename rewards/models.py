"""The unified points ledger: accounts, transactions, immutable entries, lots, holds, seals.

Amounts are signed 64-bit integers. For a points unit (a program's `unit_code`) one unit is one point; for a currency
unit ("CNY") one unit is one ten-thousandth (CNY 1 = 10000), so obligations carry four decimal places. A positive entry
credits the account (raises its balance), a negative one debits it; the entries of a transaction sum to zero per unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from core.ids import new_public_id
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
    LOSS = "loss", _("losses written off")
    SUSPENSE = "suspense", _("unreconciled differences")


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
    # Where the account's row and entries live when the ledger is distributed (docs/scaling.md, "Citus"): set once at
    # creation from the identity (`AccountRef.spread`) and never changed; not part of the identity.
    spread = models.PositiveSmallIntegerField(
        _("spread"),
        default=0,
        editable=False,
        help_text=_(
            "A cardholder's accounts and the bank sub-accounts that serve them share one value (the cardholder's "
            "sub-account number); every other account has 0."
        ),
    )
    may_go_negative = models.BooleanField(_("may go negative"), default=False)
    posted = models.BigIntegerField(_("posted balance"), default=0)
    held = models.BigIntegerField(_("held"), default=0)
    version = models.BigIntegerField(_("version"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        permissions = [("adjust_points", _("Can request and approve points adjustments"))]
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


class LedgerTransactionManager(models.Manager["LedgerTransaction"]):
    """Reads that name the transaction's month (the table is partitioned by month on `created_at`), so PostgreSQL
    reads one partition."""

    def one(self, pk: int, created_at: datetime) -> models.QuerySet[LedgerTransaction]:
        """The transaction `pk`, made at `created_at`, in its month's partition."""
        return self.filter(pk=pk, created_at=created_at)

    def keyed(self, key: str) -> LedgerTransaction | None:
        """The transaction that took the idempotency key `key` (its row in `LedgerKey`), or None (no such key, or its
        transaction's month was archived: `posting.replay` tells the two apart)."""
        taken = LedgerKey.objects.filter(idempotency_key=key).values_list("transaction_id", "transaction_created_at")
        row = taken.first()
        return None if row is None else self.one(*row).first()

    def redate(self, pks: Iterable[int], at: datetime) -> None:
        """Dates the transactions `pks` at `at`, for the demo's history and tests (never a posted day's books): their
        keys' rows, which the transactions follow (ON UPDATE CASCADE), and their entries, lots and other referrers
        follow them. The transactions and entries are also written directly, for a database where those keys are
        dropped (Citus)."""
        ids = list(pks)
        LedgerKey.objects.filter(transaction_id__in=ids).update(transaction_created_at=at)
        self.filter(pk__in=ids).update(created_at=at)
        Entry.objects.filter(transaction_id__in=ids).update(created_at=at)


class LedgerTransaction(models.Model):
    """A posting. The table is partitioned by month on `created_at` (docs/scaling.md, "Partitioning by month"): the
    database's primary key is `(id, created_at)`, and every table that refers to a transaction carries its
    `created_at` too, in a composite foreign key `(…_id, …_created_at)` → `(id, created_at)` made by the migrations
    (rewards/migrations/0023, payments/migrations/0044), ON UPDATE CASCADE, so the fields here make no constraint of
    their own (`db_constraint=False`). The idempotency key is unique across every month through `LedgerKey`, which
    the transaction refers to (rewards/migrations/0026): its `(idempotency_key, id, created_at)` → the key's row."""

    class Kind(models.TextChoices):
        EARN = "earn", _("earn")
        EARN_BATCH = "earn_batch", _("earn (batch)")
        SPEND = "spend", _("spend")
        HOLD_POST = "hold_post", _("hold posted")
        EXCHANGE = "exchange", _("exchange")
        REVERSAL = "reversal", _("reversal")
        ADJUST = "adjust", _("adjustment")
        EXPIRE = "expire", _("expiry")
        COFUNDING = "cofunding", _("promotion co-funding")
        WRITE_OFF = "write_off", _("loss written off")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    # Unique across every month: its row in LedgerKey, written in the same database transaction, holds it.
    idempotency_key = models.CharField(_("idempotency key"), max_length=200)
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
        db_constraint=False,  # (reverses_id, reverses_created_at) in the database
    )
    reverses_created_at = models.DateTimeField(_("reversed transaction's time"), null=True, blank=True, editable=False)
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
    # Written with the transaction's rows, in its database transaction. On Citus the entries commit on the workers
    # after the transaction row commits on the coordinator: the sealer seals a transaction only once it sees this
    # many of its entries, and `ledger_check` reports a transaction whose entries number otherwise.
    entry_count = models.PositiveIntegerField(_("entries"))
    # Set by the posting (`posting.transaction_keyed`), which writes the same instant to the key's row first.
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    objects = LedgerTransactionManager()

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
            # A day's transactions, for clearing (alliance.services.clearing) and the statements behind it.
            models.Index(fields=["created_at"], name="ledger_txn_created_at"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.idempotency_key}"


class LedgerKey(models.Model):
    """The idempotency key a ledger transaction took, unique across every month: a partitioned table's unique keys must
    hold its partition column, and a retried posting gets a new `created_at`. Written with its transaction, in the same
    database transaction, by every path that posts; a second posting with the key fails here and replays the first.

    The transaction refers to its key's row, `(idempotency_key, id, created_at)` → `(idempotency_key, transaction_id,
    transaction_created_at)` (rewards/migrations/0026), checked at commit: no transaction without its key, and the row
    names its transaction exactly. The row refers to nothing, so it outlives its transaction's month when that month
    is archived, and still refuses the key to a later posting."""

    idempotency_key = models.CharField(_("idempotency key"), max_length=200, primary_key=True)
    transaction = models.OneToOneField(
        LedgerTransaction,
        on_delete=models.CASCADE,  # goes with its transaction (only a benchmark's clean-up deletes one)
        related_name="key",
        db_constraint=False,  # the transaction's key refers to this row (see above), not the other way
        verbose_name=_("transaction"),
    )
    transaction_created_at = models.DateTimeField(_("transaction's time"), editable=False)

    class Meta:
        verbose_name = _("ledger idempotency key")
        verbose_name_plural = _("ledger idempotency keys")
        constraints = [
            # What refers to a transaction from a table that is not partitioned (lots, lot movements, holds, voucher
            # payments, promotion uses, a reversal) refers to this row, which outlives the transaction's month
            # (rewards/migrations/0027).
            models.UniqueConstraint(
                fields=("transaction", "transaction_created_at"), name="rewards_ledgerkey_names_a_transaction_once"
            )
        ]

    def __str__(self) -> str:
        return self.idempotency_key


class Entry(models.Model):
    """Immutable. `balance_after` is the account's posted balance right after this entry (the running balance)."""

    transaction = models.ForeignKey(  # (transaction_id, created_at) in the database
        LedgerTransaction,
        on_delete=models.PROTECT,
        related_name="entries",
        db_constraint=False,
        verbose_name=_("transaction"),
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_index=False, verbose_name=_("account")
    )
    unit = models.CharField(_("unit"), max_length=24)
    amount = models.BigIntegerField(_("amount"))
    balance_after = models.BigIntegerField(_("balance after"))
    spread = models.PositiveSmallIntegerField(_("spread"), editable=False)  # its account's, always (never defaulted)
    # Its transaction's created_at, always (every path that writes entries sets it): the table is partitioned by month
    # on it (core/partitions.py), so a transaction's entries sit in one partition and are read there.
    created_at = models.DateTimeField(_("created"), db_default=Now())

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
    earned_by = models.ForeignKey(  # (earned_by_id, earned_by_created_at) in the database
        LedgerTransaction,
        on_delete=models.PROTECT,
        related_name="lots",
        db_constraint=False,
        verbose_name=_("earned by"),
    )
    earned_by_created_at = models.DateTimeField(_("earned at"), editable=False)
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

    transaction = models.ForeignKey(  # (transaction_id, transaction_created_at) in the database
        LedgerTransaction,
        on_delete=models.PROTECT,
        related_name="lot_movements",
        db_constraint=False,
        verbose_name=_("transaction"),
    )
    transaction_created_at = models.DateTimeField(_("transaction's time"), editable=False)
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
    transaction = models.OneToOneField(  # (transaction_id, transaction_created_at) in the database
        LedgerTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="hold",
        db_constraint=False,
        verbose_name=_("transaction"),
    )
    transaction_created_at = models.DateTimeField(_("transaction's time"), null=True, blank=True, editable=False)
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


# --- benefits and vouchers (权益共享): see docs/benefits.md ----------------------------------------------------------


class Benefit(models.Model):
    """A benefit in the shared catalogue, contributed and funded by a member bank or a merchant.

    `bank` is the member bank that answers for it: the contributing bank, or the contributing merchant's sponsor bank
    (whose operators approve publishing it, in the approval queue); the admin scopes by it. `updated_at` is the draft's
    version a publication request names. Priced in points of one programme, at a CNY value payable with
    any programme's points, or free for eligible cards (a card privilege). Stock and quotas are reserved with guarded
    updates in the redemption's transaction (`rewards.services.benefit_redeem`)."""

    class Kind(models.TextChoices):
        LOUNGE = "lounge", _("lounge visit")
        VOUCHER = "voucher", _("voucher at a merchant")
        COUPON = "coupon", _("discount coupon")
        SERVICE = "service", _("service")
        GIFT = "gift", _("co-branded gift")

    class Pricing(models.TextChoices):
        POINTS = "points", _("points of one programme")
        CNY = "cny", _("CNY value, any programme's points")
        FREE = "free", _("free for eligible cards")

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        PUBLISHED = "published", _("published")
        WITHDRAWN = "withdrawn", _("withdrawn")

    bank = models.ForeignKey(
        MemberBank,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("responsible bank"),
        help_text=_("The contributing bank, or the contributing merchant's sponsor bank."),
    )
    funding_merchant = models.ForeignKey(
        "merchants.Merchant",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("funding merchant"),
        help_text=_("Set when a merchant contributes and funds the benefit; empty when the bank does."),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    title_zh = models.CharField(_("title (Chinese)"), max_length=120)
    title_en = models.CharField(_("title (English)"), max_length=120)
    description_zh = models.TextField(_("description (Chinese)"), blank=True)
    description_en = models.TextField(_("description (English)"), blank=True)
    image = models.CharField(
        _("image"), max_length=200, blank=True, help_text=_("A path under static/, e.g. rewards/benefits/lounge.svg.")
    )
    pricing = models.CharField(_("pricing"), max_length=8, choices=Pricing.choices)
    price_program = models.ForeignKey(
        PointsProgram,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("price programme"),
    )
    price_points = models.PositiveIntegerField(_("price in points"), null=True, blank=True)
    price_cny_units = models.PositiveBigIntegerField(
        _("price (CNY, ten-thousandths)"), null=True, blank=True, help_text=_("CNY 1 = 10000.")
    )
    value_cny_units = models.PositiveBigIntegerField(
        _("stated value per use (CNY, ten-thousandths)"),
        null=True,
        blank=True,
        help_text=_(
            "What one use is worth to a cardholder, as its contributor states it (CNY 1 = 10000); the card "
            "comparison values a free privilege at this. Empty: not valued."
        ),
    )
    eligible_banks = models.ManyToManyField(
        MemberBank, blank=True, related_name="+", verbose_name=_("eligible banks"), help_text=_("Empty: every bank.")
    )
    eligible_products = models.ManyToManyField(
        "members.CardProduct",
        blank=True,
        related_name="+",
        verbose_name=_("eligible card products"),
        help_text=_("Empty: every product."),
    )
    eligible_tiers = models.JSONField(
        _("eligible tiers"), default=list, blank=True, help_text=_('Card tiers, e.g. ["gold", "platinum"]; empty: all.')
    )
    stock_total = models.PositiveIntegerField(_("total stock"), null=True, blank=True, help_text=_("Empty: unlimited."))
    stock_left = models.PositiveIntegerField(_("stock left"), null=True, blank=True)
    redeemed_count = models.PositiveIntegerField(_("redemptions"), default=0)
    cost_units = models.BigIntegerField(_("cost (CNY, ten-thousandths)"), default=0)
    limit_per_month = models.PositiveIntegerField(_("per cardholder per month"), null=True, blank=True)
    limit_per_year = models.PositiveIntegerField(_("per cardholder per year"), null=True, blank=True)
    limit_per_card = models.PositiveIntegerField(_("per card"), null=True, blank=True)
    valid_from = models.DateTimeField(_("valid from"))
    valid_until = models.DateTimeField(_("valid until"))
    terms_zh = models.TextField(_("redemption terms (Chinese)"), blank=True)
    terms_en = models.TextField(_("redemption terms (English)"), blank=True)
    merchant = models.ForeignKey(
        "merchants.Merchant",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("redeemed at merchant"),
        help_text=_("For a merchant voucher: the merchant that redeems it."),
    )
    stores = models.ManyToManyField(
        "merchants.Store",
        blank=True,
        related_name="+",
        verbose_name=_("stores"),
        help_text=_("Empty: any of the merchant's stores."),
    )
    voucher_valid_days = models.PositiveSmallIntegerField(_("voucher valid (days after issue)"), default=30)
    cancel_window_hours = models.PositiveSmallIntegerField(
        _("cancel window (hours)"), default=24, help_text=_("0: a voucher cannot be cancelled.")
    )
    return_stock_on_expiry = models.BooleanField(
        _("return stock on expiry"),
        default=False,
        help_text=_("The terms put an unredeemed voucher's stock back when it expires (points are never returned)."),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    published_at = models.DateTimeField(_("published"), null=True, blank=True)

    class Meta:
        verbose_name = _("benefit")
        verbose_name_plural = _("benefits")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        pricing="points",
                        price_program__isnull=False,
                        price_points__gt=0,
                        price_cny_units__isnull=True,
                    )
                    | models.Q(
                        pricing="cny", price_program__isnull=True, price_points__isnull=True, price_cny_units__gt=0
                    )
                    | models.Q(
                        pricing="free",
                        price_program__isnull=True,
                        price_points__isnull=True,
                        price_cny_units__isnull=True,
                    )
                ),
                name="benefit_price_matches_pricing",
            ),
            models.CheckConstraint(
                condition=models.Q(stock_total__isnull=True, stock_left__isnull=True)
                | models.Q(
                    stock_total__isnull=False, stock_left__isnull=False, stock_left__lte=models.F("stock_total")
                ),
                name="benefit_stock_within_total",
            ),
            models.CheckConstraint(
                condition=models.Q(valid_until__gt=models.F("valid_from")), name="benefit_valid_window"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title_zh} / {self.title_en}"

    @property
    def title(self) -> str:
        return self.title_zh if (get_language() or "").startswith("zh") else self.title_en


class QuotaKind(models.TextChoices):
    HOLDER_MONTH = "month", _("per cardholder per month")
    HOLDER_YEAR = "year", _("per cardholder per year")
    CARD = "card", _("per card")


class BenefitQuotaUse(models.Model):
    """How many of a benefit one cardholder (in one month or year) or one card has taken: a counter row, raised by a
    guarded increment (`INSERT … ON CONFLICT DO UPDATE … WHERE used < limit`) in the redemption's transaction."""

    benefit = models.ForeignKey(Benefit, on_delete=models.CASCADE, related_name="+", verbose_name=_("benefit"))
    kind = models.CharField(_("kind"), max_length=8, choices=QuotaKind.choices)
    owner_id = models.BigIntegerField(_("cardholder or card"))
    period = models.CharField(_("period"), max_length=8, blank=True)
    used = models.PositiveIntegerField(_("used"), default=0)

    class Meta:
        verbose_name = _("benefit quota use")
        verbose_name_plural = _("benefit quota uses")
        constraints = [
            models.UniqueConstraint(fields=["benefit", "kind", "owner_id", "period"], name="benefit_quota_use_unique")
        ]

    def __str__(self) -> str:
        return f"{self.benefit_id} {self.kind}:{self.owner_id} {self.period} = {self.used}"


class Voucher(models.Model):
    """One redemption of a benefit: issued → redeemed / expired / cancelled. The code is never stored in the clear
    for lookup: `code_hash` (keyed) finds it, `code_encrypted` lets its holder see it again, `code_hint` names it."""

    class State(models.TextChoices):
        ISSUED = "issued", _("issued")
        REDEEMED = "redeemed", _("redeemed")
        EXPIRED = "expired", _("expired")
        CANCELLED = "cancelled", _("cancelled")

    benefit = models.ForeignKey(Benefit, on_delete=models.PROTECT, related_name="vouchers", verbose_name=_("benefit"))
    cardholder = models.ForeignKey(Cardholder, on_delete=models.PROTECT, related_name="+", verbose_name=_("cardholder"))
    card = models.ForeignKey("members.Card", on_delete=models.PROTECT, related_name="+", verbose_name=_("card"))
    code_hash = models.CharField(_("code (keyed hash)"), max_length=64, unique=True, editable=False)
    code_encrypted = models.TextField(_("code (encrypted)"), editable=False)
    code_hint = models.CharField(_("code hint"), max_length=8)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.ISSUED)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    request_hash = models.CharField(_("request hash"), max_length=64)
    points = models.JSONField(_("points taken"), default=dict, blank=True, help_text=_("Programme id → points."))
    cost_units = models.BigIntegerField(_("cost (CNY, ten-thousandths)"), default=0)
    month = models.CharField(_("quota month"), max_length=8)
    issued_at = models.DateTimeField(_("issued"))
    expires_at = models.DateTimeField(_("valid until"))
    redeemed_at = models.DateTimeField(_("redeemed"), null=True, blank=True)
    redeemed_store = models.ForeignKey(
        "merchants.Store",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("redeemed at store"),
    )
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True)
    expired_at = models.DateTimeField(_("expired"), null=True, blank=True)

    class Meta:
        verbose_name = _("voucher")
        verbose_name_plural = _("vouchers")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["expires_at"], name="voucher_issued_expiry", condition=models.Q(state="issued")),
            models.Index(fields=["cardholder", "-id"], name="voucher_cardholder"),
        ]

    def __str__(self) -> str:
        return f"voucher …{self.code_hint} ({self.state})"


class VoucherPayment(models.Model):
    """The points one programme paid for a voucher, with its ledger transaction (reversed on cancellation)."""

    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="payments", verbose_name=_("voucher"))
    program = models.ForeignKey(PointsProgram, on_delete=models.PROTECT, related_name="+", verbose_name=_("programme"))
    points = models.PositiveBigIntegerField(_("points"))
    value_units = models.BigIntegerField(_("value (CNY, ten-thousandths)"))
    transaction = models.OneToOneField(  # (transaction_id, transaction_created_at) in the database
        LedgerTransaction,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        verbose_name=_("ledger transaction"),
    )
    transaction_created_at = models.DateTimeField(_("transaction's time"), editable=False)

    class Meta:
        verbose_name = _("voucher payment")
        verbose_name_plural = _("voucher payments")
        ordering = ("id",)
        constraints = [models.CheckConstraint(condition=models.Q(points__gt=0), name="voucher_payment_points_positive")]

    def __str__(self) -> str:
        return f"{self.points} points of {self.program_id}"


# --- merchant promotions (新商盟) -------------------------------------------------------------------------------------


def promotion_public_id() -> str:
    return new_public_id("promo")


class Promotion(models.Model):
    """A merchant's campaign: a benefit (one kind), the conditions a payment must meet, a hard budget, a schedule.

    Money is in minor units of the promotion's currency. `committed` is what is reserved and consumed against the
    budget (a payment's discount, or the CNY value of the points a payment is given, rounded up to the fen); `uses`
    counts payments holding a use. Both move only by guarded updates (`rewards.services.promotions`), so the total
    given never exceeds `budget` and `uses` never exceeds `max_uses`. A co-funded promotion applies only once the
    co-funding bank approved it."""

    class Kind(models.TextChoices):
        AMOUNT_OFF = "amount_off", _("amount off (满减)")
        PERCENT_OFF = "percent_off", _("percent off with a cap (折扣封顶)")
        POINTS_MULTIPLIER = "points_multiplier", _("points multiplier (积分加倍)")
        RANDOM_OFF = "random_off", _("random instant discount (随机立减)")
        CASHBACK_POINTS = "cashback_points", _("cashback as points (返现)")
        FREQUENCY_REWARD = "frequency_reward", _("frequency reward (Nth payment in a month)")

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        PAUSED = "paused", _("paused")
        ENDED = "ended", _("ended")

    class Stacking(models.TextChoices):
        EXCLUSIVE = "exclusive", _("exclusive")
        STACKABLE = "stackable", _("stackable")

    class Cofunding(models.TextChoices):
        NONE = "", _("merchant-funded")
        PENDING = "pending", _("awaiting the bank's approval")
        APPROVED = "approved", _("approved by the bank")
        REJECTED = "rejected", _("rejected by the bank")

    public_id = models.CharField(_("id"), max_length=40, unique=True, default=promotion_public_id, editable=False)
    merchant = models.ForeignKey(
        "merchants.Merchant", on_delete=models.PROTECT, related_name="promotions", verbose_name=_("merchant")
    )
    livemode = models.BooleanField(_("live mode"), default=True)
    name = models.CharField(_("name"), max_length=120)
    description = models.CharField(_("description"), max_length=500, blank=True)
    kind = models.CharField(_("kind"), max_length=24, choices=Kind.choices)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # The benefit: the fields its kind uses (checked by `promotion_check` and the constraint below).
    amount_off = models.BigIntegerField(_("amount off"), null=True, blank=True)
    percent_off = models.DecimalField(
        _("percent off"), max_digits=5, decimal_places=2, null=True, blank=True, help_text=_("50 = half price.")
    )
    max_discount = models.BigIntegerField(_("discount cap"), null=True, blank=True)
    multiplier = models.DecimalField(
        _("points multiplier"), max_digits=6, decimal_places=2, null=True, blank=True, help_text=_("2 = double points.")
    )
    random_min = models.BigIntegerField(_("random discount from"), null=True, blank=True)
    random_max = models.BigIntegerField(_("random discount up to"), null=True, blank=True)
    random_mean = models.BigIntegerField(
        _("random discount on average"), null=True, blank=True, help_text=_("The expected cost of one use.")
    )
    cashback_rate = models.DecimalField(
        _("cashback rate"),
        max_digits=6,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("Share of the cash paid given back as points, e.g. 0.05."),
    )
    frequency_count = models.PositiveSmallIntegerField(
        _("every Nth payment in a month"), null=True, blank=True, help_text=_("The Nth payment earns a voucher.")
    )
    reward_benefit = models.ForeignKey(
        Benefit,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("voucher given"),
    )
    # Conditions; an empty list means any.
    min_spend = models.BigIntegerField(_("minimum spend"), default=0)
    stores = models.ManyToManyField(
        "merchants.Store", blank=True, related_name="+", verbose_name=_("stores"), help_text=_("Empty: every store.")
    )
    categories = models.JSONField(_("spend categories"), default=list, blank=True)
    card_banks = models.ManyToManyField(
        MemberBank, blank=True, related_name="+", verbose_name=_("card banks"), help_text=_("Empty: every bank.")
    )
    card_products = models.ManyToManyField(
        "members.CardProduct",
        blank=True,
        related_name="+",
        verbose_name=_("card products"),
        help_text=_("Empty: every product."),
    )
    card_tiers = models.JSONField(_("card tiers"), default=list, blank=True)
    methods = models.JSONField(_("payment methods"), default=list, blank=True)
    weekdays = models.JSONField(_("weekdays"), default=list, blank=True, help_text=_("1 = Monday … 7 = Sunday."))
    hour_from = models.PositiveSmallIntegerField(_("from hour"), null=True, blank=True)
    hour_to = models.PositiveSmallIntegerField(_("until hour"), null=True, blank=True, help_text=_("Exclusive."))
    first_purchase = models.BooleanField(_("first purchase only"), default=False)
    segment_tags = models.JSONField(
        _("segments"),
        default=list,
        blank=True,
        help_text=_("Only for cardholders who consented to personalised offers."),
    )
    # Budget and limits.
    budget = models.BigIntegerField(_("budget"))
    max_uses = models.PositiveIntegerField(_("most uses"), null=True, blank=True)
    per_cardholder_daily = models.PositiveIntegerField(_("uses per cardholder per day"), null=True, blank=True)
    per_cardholder = models.PositiveIntegerField(_("uses per cardholder"), null=True, blank=True)
    committed = models.BigIntegerField(_("budget used"), default=0)
    uses = models.PositiveIntegerField(_("uses"), default=0)
    stacking = models.CharField(_("stacking"), max_length=16, choices=Stacking.choices, default=Stacking.EXCLUSIVE)
    priority = models.SmallIntegerField(_("priority"), default=0, help_text=_("Higher applies first."))
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    cofunder = models.ForeignKey(
        MemberBank,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="cofunded_promotions",
        verbose_name=_("co-funding bank"),
    )
    cofunder_share = models.DecimalField(
        _("bank's share of the cost"), max_digits=5, decimal_places=4, null=True, blank=True
    )
    cofunding = models.CharField(
        _("co-funding"), max_length=16, choices=Cofunding.choices, default=Cofunding.NONE, blank=True
    )
    cofunding_decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("co-funding decided by"),
    )
    cofunding_decided_at = models.DateTimeField(_("co-funding decided"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("promotion")
        verbose_name_plural = _("promotions")
        ordering = ("-id",)
        indexes = [models.Index(fields=["merchant", "livemode", "status"], name="promotion_merchant_status")]
        constraints = [
            models.CheckConstraint(condition=models.Q(budget__gt=0), name="promotion_budget_positive"),
            models.CheckConstraint(
                condition=models.Q(committed__gte=0, committed__lte=models.F("budget")),
                name="promotion_committed_within_budget",
            ),
            models.CheckConstraint(
                condition=models.Q(max_uses__isnull=True) | models.Q(uses__lte=models.F("max_uses")),
                name="promotion_uses_within_max",
            ),
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")), name="promotion_window"),
            models.CheckConstraint(condition=models.Q(min_spend__gte=0), name="promotion_min_spend_non_negative"),
            models.CheckConstraint(
                condition=models.Q(cofunder__isnull=True, cofunder_share__isnull=True, cofunding="")
                | models.Q(
                    cofunder__isnull=False,
                    cofunder_share__gt=0,
                    cofunder_share__lte=1,
                    cofunding__in=["pending", "approved", "rejected"],
                ),
                name="promotion_cofunding_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"

    @property
    def budget_left(self) -> int:
        return self.budget - self.committed


class PromotionUse(models.Model):
    """One payment's use of one promotion: reserved with the payment, consumed on capture (the share captured),
    released on cancel or failure; refunds hand back cost and points cumulatively
    (returned so far = floor(given × refunded / captured)). `payment` is the payment's public id."""

    class Status(models.TextChoices):
        RESERVED = "reserved", _("reserved")
        CONSUMED = "consumed", _("consumed")
        RELEASED = "released", _("released")

    # Each payment writes a row per promotion it uses: only the indexes a query needs. The unique (promotion,
    # payment) serves a promotion's uses; `payment` finds a payment's.
    promotion = models.ForeignKey(
        Promotion, on_delete=models.PROTECT, related_name="use_set", db_index=False, verbose_name=_("promotion")
    )
    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.PROTECT, related_name="+", db_index=False, verbose_name=_("cardholder")
    )
    payment = models.CharField(_("payment"), max_length=40, db_index=True)
    day = models.DateField(_("day"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RESERVED)
    position = models.PositiveSmallIntegerField(_("order applied"), default=0)
    discount = models.BigIntegerField(_("discount"), default=0)
    points = models.BigIntegerField(_("points given"), default=0)
    cost = models.BigIntegerField(_("cost"), default=0, help_text=_("Minor units of the promotion's currency."))
    cofunder_cost = models.BigIntegerField(_("bank's part of the cost"), default=0)
    returned_cost = models.BigIntegerField(_("cost returned by refunds"), default=0)
    returned_points = models.BigIntegerField(_("points reversed by refunds"), default=0)
    stamp = models.PositiveIntegerField(_("payment number this month"), null=True, blank=True)
    counted = models.BooleanField(
        _("counted"), default=False, help_text=_("Holds one of the promotion's uses and of the cardholder's limits.")
    )
    voucher = models.OneToOneField(
        Voucher, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("voucher given")
    )
    points_transaction = models.OneToOneField(  # (points_transaction_id, points_transaction_created_at) in the database
        LedgerTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        verbose_name=_("points ledger transaction"),
    )
    points_transaction_created_at = models.DateTimeField(
        _("points transaction's time"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("promotion use")
        verbose_name_plural = _("promotion uses")
        ordering = ("-id",)
        constraints = [
            models.UniqueConstraint(fields=["promotion", "payment"], name="promotion_use_once_per_payment"),
            models.CheckConstraint(
                condition=models.Q(
                    cost__gte=0,
                    returned_cost__gte=0,
                    returned_cost__lte=models.F("cost"),
                    cofunder_cost__gte=0,
                    cofunder_cost__lte=models.F("cost"),
                ),
                name="promotion_use_cost_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.promotion_id} × {self.payment} ({self.status})"


class PromotionCounter(models.Model):
    """How many uses of a promotion one cardholder holds in a period ("" the whole campaign, "2026-12-05" a day,
    "2026-12" a month of stamps for a frequency reward): raised by a guarded increment in the payment's
    transaction, lowered when a use is released."""

    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="+", verbose_name=_("promotion"))
    cardholder_id = models.BigIntegerField(_("cardholder"))
    period = models.CharField(_("period"), max_length=10, blank=True)
    used = models.PositiveIntegerField(_("used"), default=0)

    class Meta:
        verbose_name = _("promotion counter")
        verbose_name_plural = _("promotion counters")
        constraints = [
            models.UniqueConstraint(fields=["promotion", "cardholder_id", "period"], name="promotion_counter_unique")
        ]

    def __str__(self) -> str:
        return f"{self.promotion_id}/{self.cardholder_id}/{self.period or 'campaign'}: {self.used}"
