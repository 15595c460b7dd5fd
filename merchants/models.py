from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.crypto import decrypt, encrypt
from core.personal import email_hash, mask_email, mask_name, phone_digits, phone_hash
from members.models import MemberBank, SpendCategory


class RiskGrade(models.TextChoices):
    LOW = "low", _("low")
    MEDIUM = "medium", _("medium")
    HIGH = "high", _("high")


class SettlementCycle(models.TextChoices):
    T1 = "t1", _("T+1 (next working day)")
    T0 = "t0", _("T+0 (intraday windows)")


class Merchant(models.Model):
    """A merchant accepting alliance payments, sponsored by a member holding an acquiring licence."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        SUSPENDED = "suspended", _("suspended")
        CLOSED = "closed", _("closed")

    code = models.CharField(_("code"), max_length=32, unique=True, validators=[RegexValidator(r"^[A-Z0-9_-]{3,32}$")])
    legal_name = models.CharField(_("legal name"), max_length=200)
    display_name = models.CharField(_("display name"), max_length=100)
    category_code = models.CharField(
        _("merchant category code"), max_length=4, validators=[RegexValidator(r"^\d{4}$")], default="5999"
    )
    spend_category = models.CharField(
        _("spend category"), max_length=16, choices=SpendCategory.choices, default=SpendCategory.OTHER
    )
    sponsor_bank = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, related_name="sponsored_merchants", verbose_name=_("sponsor bank")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    settlement_cycle = models.CharField(
        _("settlement cycle"),
        max_length=4,
        choices=SettlementCycle.choices,
        default=SettlementCycle.T1,
        help_text=_("T+0 only when the merchant's contract allows it."),
    )
    risk_grade = models.CharField(
        _("risk grade"),
        max_length=8,
        choices=RiskGrade.choices,
        default=RiskGrade.LOW,
        help_text=_("Sets its reserve."),
    )
    payouts_frozen = models.BooleanField(
        _("payouts frozen"), default=False, help_text=_("Settled, but nothing is paid until released.")
    )
    frozen_reason = models.CharField(_("why frozen"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")
        ordering = ("code",)
        # Asked for by one operator and approved by another in the approval queue (core.approvals).
        permissions = [("unfreeze_payouts", _("Can request and approve lifting a payout freeze"))]

    def __str__(self) -> str:
        return f"{self.code} {self.display_name}"


class Mode(models.TextChoices):
    TEST = "test", _("test")
    LIVE = "live", _("live")


# Objects made through the API belong to the mode of the key that made them: a key sees only its own mode's.
LIVEMODE_HELP = _("Unticked: made with a test key, in the sandbox.")


class ApiKey(models.Model):
    """A merchant's secret API key. Only its SHA-256 and a visible prefix are stored; the key is shown once."""

    class Scope(models.TextChoices):
        READ = "read", _("read only")
        WRITE = "write", _("read and write")

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("merchant")
    )
    mode = models.CharField(_("mode"), max_length=8, choices=Mode.choices, default=Mode.TEST)
    scope = models.CharField(_("scope"), max_length=8, choices=Scope.choices, default=Scope.WRITE)
    prefix = models.CharField(_("prefix"), max_length=16, editable=False)
    key_hash = models.CharField(_("SHA-256 of the key"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.prefix}…"

    @property
    def livemode(self) -> bool:
        return self.mode == Mode.LIVE

    @property
    def replica_pin(self) -> str:
        """After a write through any of the merchant's keys, reads through all of them go to the primary for a while
        (core.replicas): a merchant may write with one key and list with another."""
        return f"merchant:{self.merchant_id}"


class KeyDelivery(models.Model):
    """A one-time link that delivers a new API key to the merchant's contact, never to an operator. The link's token
    is kept only as a keyed hash; the key is kept encrypted until the merchant collects it, then wiped."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="key_deliveries", verbose_name=_("merchant")
    )
    api_key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, related_name="delivery", verbose_name=_("key"))
    token_hash = models.CharField(_("keyed hash of the link's token"), max_length=64, unique=True, editable=False)
    key_encrypted = models.TextField(_("key (encrypted, wiped once collected)"), blank=True, editable=False)
    sent_to = models.CharField(_("sent to (masked)"), max_length=254)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("link expires"))
    sent_at = models.DateTimeField(_("email sent"), null=True, blank=True)
    collected_at = models.DateTimeField(_("collected"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key delivery")
        verbose_name_plural = _("API key deliveries")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(collected_at__isnull=True) | models.Q(key_encrypted=""),
                name="keydelivery_wiped_once_collected",
            )
        ]

    def __str__(self) -> str:
        return f"{self.api_key.prefix}… → {self.sent_to}"


class Store(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="stores", verbose_name=_("merchant"))
    code = models.CharField(_("code"), max_length=32, validators=[RegexValidator(r"^[A-Za-z0-9_-]{1,32}$")])
    name = models.CharField(_("name"), max_length=100)
    city = models.CharField(_("city"), max_length=64, blank=True)
    livemode = models.BooleanField(_("live mode"), default=True, help_text=LIVEMODE_HELP)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["merchant", "livemode", "code"], name="store_code_unique_per_merchant_mode")
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class WebhookEndpoint(models.Model):
    """Where a merchant receives events. The signing secret is stored encrypted and shown once."""

    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="webhook_endpoints", verbose_name=_("merchant")
    )
    url = models.URLField(_("URL"), max_length=500)
    event_types = models.JSONField(_("event types"), default=list, blank=True, help_text=_("Empty: every event."))
    secret_encrypted = models.TextField(_("secret (encrypted)"), editable=False)
    enabled = models.BooleanField(_("enabled"), default=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    livemode = models.BooleanField(_("live mode"), default=True, help_text=_("Receives the events of this mode only."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ("id",)

    def __str__(self) -> str:
        return self.url

    def accepts(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)


class Event(models.Model):
    """An outbox row: something that happened to a merchant's object, delivered to its webhook endpoints.

    The table is partitioned by month on `created_at` (docs/scaling.md, "Partitioning by month"): in the database the
    primary key is `(id, created_at)` and `public_id` is unique with the time, `(public_id, created_at)`; ids come
    from one sequence and public ids carry 128 random bits, so each is still unique on its own. A public id is timed
    (core.ids): it starts with `created_at` to the millisecond, so a lookup by it reads one month."""

    public_id = models.CharField(_("id"), max_length=40, unique=True, editable=False)
    merchant = models.ForeignKey(  # led by (merchant, livemode, -id): no index of its own
        Merchant,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        verbose_name=_("merchant"),
    )
    type = models.CharField(_("type"), max_length=64)
    payload = models.JSONField(_("payload"), default=dict)
    # The id of the object in the payload (pay_…, re_…): which events an object has had is one index lookup.
    object_id = models.CharField(_("object"), max_length=64, blank=True, default="", editable=False)
    livemode = models.BooleanField(_("live mode"), default=True, help_text=LIVEMODE_HELP)
    # Set by the outbox with the public id's time (events_emit), so not auto_now_add, which would set it again.
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False, db_index=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["merchant", "livemode", "-id"]),
            models.Index(fields=["object_id", "type"], name="event_object_type"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed (gave up)")

    # The database's key is composite, (event_id, event_created_at) → the event's (id, created_at), ON DELETE
    # CASCADE (merchants/migrations/0020): Django makes no constraint of its own, and the unique key leads with event.
    event = models.ForeignKey(
        Event,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_constraint=False,
        db_index=False,
        verbose_name=_("event"),
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("endpoint")
    )
    # The event's created_at, always: the month the table is partitioned on, so a delivery sits in its event's month.
    event_created_at = models.DateTimeField(_("event created"), editable=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(_("last response code"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ("-id",)
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        constraints = [  # the event's time is the event's: this is (event, endpoint), with the partition column
            models.UniqueConstraint(fields=["event", "endpoint", "event_created_at"], name="delivery_once_per_endpoint")
        ]

    def __str__(self) -> str:
        return f"{self.event_id}→{self.endpoint_id} {self.status}"


class MerchantApplication(models.Model):
    """An application to accept alliance payments, reviewed by the chosen sponsor bank's operators.

    The contact person's name, phone and email are personal data: stored encrypted, read through the properties of
    the same names, shown to operators masked and found by the exact phone or email (keyed hashes)."""

    AUDIT_REDACT = ("contact_name_masked", "contact_phone_last4", "contact_email_masked")

    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("submitted")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")

    legal_name = models.CharField(_("legal name"), max_length=200)
    display_name = models.CharField(_("display name"), max_length=100)
    credit_code = models.CharField(_("unified social credit code"), max_length=18)
    category_code = models.CharField(_("merchant category code"), max_length=4, validators=[RegexValidator(r"^\d{4}$")])
    spend_category = models.CharField(
        _("spend category"), max_length=16, choices=SpendCategory.choices, default=SpendCategory.OTHER
    )
    sponsor_bank = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, related_name="merchant_applications", verbose_name=_("sponsor bank")
    )
    settlement_account_name = models.CharField(_("settlement account name"), max_length=200)
    settlement_bank_name = models.CharField(_("settlement bank"), max_length=100)
    settlement_account_encrypted = models.TextField(_("settlement account (encrypted)"), editable=False)
    settlement_account_last4 = models.CharField(_("settlement account, last four"), max_length=4, editable=False)
    contact_name_encrypted = models.TextField(_("contact name (encrypted)"), editable=False)
    contact_name_masked = models.CharField(_("contact name"), max_length=100, editable=False)
    contact_phone_encrypted = models.TextField(_("contact phone (encrypted)"), editable=False)
    contact_phone_hash = models.CharField(_("contact phone hash"), max_length=64, db_index=True, editable=False)
    contact_phone_last4 = models.CharField(_("contact phone, last four"), max_length=4, editable=False)
    contact_email_encrypted = models.TextField(_("contact email (encrypted)"), editable=False)
    contact_email_hash = models.CharField(_("contact email hash"), max_length=64, db_index=True, editable=False)
    contact_email_masked = models.CharField(_("contact email"), max_length=254, editable=False)
    store_name = models.CharField(_("first store"), max_length=100)
    store_city = models.CharField(_("city"), max_length=64)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.SUBMITTED)
    risk_grade = models.CharField(_("risk grade"), max_length=8, choices=RiskGrade.choices, blank=True)
    review_note = models.CharField(_("review note"), max_length=500, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)
    merchant = models.OneToOneField(
        Merchant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="application",
        verbose_name=_("merchant"),
    )
    created_at = models.DateTimeField(_("submitted"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant application")
        verbose_name_plural = _("merchant applications")
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.legal_name} ({self.status})"

    @property
    def contact_name(self) -> str:
        return decrypt(self.contact_name_encrypted) if self.contact_name_encrypted else ""

    @contact_name.setter
    def contact_name(self, value: str) -> None:
        self.contact_name_encrypted = encrypt(value)
        self.contact_name_masked = mask_name(value)[:100]

    @property
    def contact_phone(self) -> str:
        return decrypt(self.contact_phone_encrypted) if self.contact_phone_encrypted else ""

    @contact_phone.setter
    def contact_phone(self, value: str) -> None:
        self.contact_phone_encrypted = encrypt(value)
        self.contact_phone_hash = phone_hash(value)
        self.contact_phone_last4 = phone_digits(value)[-4:]

    @property
    def contact_email(self) -> str:
        return decrypt(self.contact_email_encrypted) if self.contact_email_encrypted else ""

    @contact_email.setter
    def contact_email(self, value: str) -> None:
        self.contact_email_encrypted = encrypt(value)
        self.contact_email_hash = email_hash(value)
        self.contact_email_masked = mask_email(value)[:254]

    @property
    def masked_contact_phone(self) -> str:
        return f"****{self.contact_phone_last4}" if self.contact_phone_last4 else ""


class SettlementAccount(models.Model):
    """Where a merchant is paid. It must be in the merchant's own name; a change needs a second operator."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, related_name="settlement_account", verbose_name=_("merchant")
    )
    account_name = models.CharField(_("account name"), max_length=200)
    bank_name = models.CharField(_("bank"), max_length=100)
    account_encrypted = models.TextField(_("account number (encrypted)"), editable=False)
    account_last4 = models.CharField(_("account, last four"), max_length=4, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("settlement account")
        verbose_name_plural = _("settlement accounts")
        # Asked for by one operator and approved by another in the approval queue (core.approvals).
        permissions = [("change_account", _("Can request and approve a settlement account change"))]

    def __str__(self) -> str:
        return f"{self.bank_name} ****{self.account_last4}"
