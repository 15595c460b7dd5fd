from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField

from core.crypto import decrypt, encrypt
from core.personal import mask_name, name_hash


def localized(zh: str, en: str) -> str:
    """The English form on English pages when there is one, the Chinese form otherwise."""
    return en if en and (get_language() or "").startswith("en") else zh


class MemberBank(models.Model):  # type: ignore[django-manager-missing]  # djmoney's manager on CardProduct
    """A member of the alliance: a bank or a licensed non-bank institution."""

    class Kind(models.TextChoices):
        STATE_OWNED = "state_owned", _("state-owned bank")
        JOINT_STOCK = "joint_stock", _("joint-stock bank")
        CITY_COMMERCIAL = "city_commercial", _("city commercial bank")
        RURAL_COMMERCIAL = "rural_commercial", _("rural commercial bank")
        CONSUMER_FINANCE = "consumer_finance", _("consumer finance company")
        PAYMENT_INSTITUTION = "payment_institution", _("payment institution")

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        SUSPENDED = "suspended", _("suspended")
        LEFT = "left", _("left the alliance")

    code = models.CharField(_("code"), max_length=16, unique=True, validators=[RegexValidator(r"^[A-Z0-9]{2,16}$")])
    name_zh = models.CharField(_("name (Chinese)"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    issuing_licence = models.BooleanField(_("issuing licence"), default=False)
    acquiring_licence = models.BooleanField(_("acquiring licence"), default=False)
    prepaid_licence = models.BooleanField(_("prepaid licence"), default=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    joined_on = models.DateField(_("joined on"))
    brand_colour = models.CharField(
        _("brand colour"), max_length=7, default="#b3261e", validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$")]
    )

    class Meta:
        verbose_name = _("member bank")
        verbose_name_plural = _("member banks")
        ordering = ("code",)

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"

    @property
    def local_name(self) -> str:
        return localized(self.name_zh, self.name_en)


class BankOperator(models.Model):
    """A staff user working for a member bank: an operator (read-write) or an auditor (read-only)."""

    class Role(models.TextChoices):
        OPERATOR = "operator", _("operator")
        AUDITOR = "auditor", _("auditor")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bank_roles", verbose_name=_("user")
    )
    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="operators", verbose_name=_("bank"))
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.OPERATOR)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("bank operator")
        verbose_name_plural = _("bank operators")
        constraints = [models.UniqueConstraint(fields=["user", "bank"], name="bankoperator_one_role_per_bank")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.bank.code} ({self.role})"


class PointsProgram(models.Model):
    """An issuing bank's points program: one ledger unit, with a CNY value per point and an expiry policy."""

    class ExpiryPolicy(models.TextChoices):
        MONTHS_AFTER_EARNING = "months_after", _("N months after earning")
        END_OF_YEAR = "end_of_year", _("end of the Nth year after earning")

    bank = models.OneToOneField(
        MemberBank, on_delete=models.PROTECT, related_name="points_program", verbose_name=_("bank")
    )
    unit_code = models.CharField(
        _("unit code"), max_length=24, unique=True, validators=[RegexValidator(r"^[A-Z0-9_-]{2,24}$")]
    )
    name = models.CharField(_("name"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100, blank=True)
    point_value_cny = models.DecimalField(
        _("point value (CNY)"), max_digits=12, decimal_places=6, help_text=_("What one point is worth, e.g. 0.005.")
    )
    expiry_policy = models.CharField(
        _("expiry policy"), max_length=16, choices=ExpiryPolicy.choices, default=ExpiryPolicy.END_OF_YEAR
    )
    expiry_period = models.PositiveSmallIntegerField(
        _("expiry period"), default=2, help_text=_("Months for 'N months after earning'; years for 'end of year N'.")
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("points program")
        verbose_name_plural = _("points programs")
        ordering = ("unit_code",)
        constraints = [
            models.CheckConstraint(condition=models.Q(point_value_cny__gt=0), name="program_point_value_positive"),
            models.CheckConstraint(condition=models.Q(expiry_period__gt=0), name="program_expiry_period_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.unit_code} {self.name}"

    @property
    def local_name(self) -> str:
        return localized(self.name, self.name_en)


class SpendCategory(models.TextChoices):
    DINING = "dining", _("dining")
    TRAVEL = "travel", _("travel")
    GROCERIES = "groceries", _("groceries")
    FUEL = "fuel", _("fuel")
    ONLINE = "online", _("online")
    OVERSEAS = "overseas", _("overseas")
    OTHER = "other", _("other")


class CardProduct(models.Model):  # type: ignore[django-manager-missing]
    """A card a member bank issues. Earning rates are points per CNY 1 of cash spent, per spend category."""

    class Kind(models.TextChoices):
        CREDIT = "credit", _("credit")
        DEBIT = "debit", _("debit")
        PREPAID = "prepaid", _("prepaid")
        CO_BRANDED = "co_branded", _("co-branded")

    class Tier(models.TextChoices):
        STANDARD = "standard", _("standard")
        GOLD = "gold", _("gold")
        PLATINUM = "platinum", _("platinum")
        DIAMOND = "diamond", _("diamond")

    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="card_products", verbose_name=_("bank"))
    code = models.CharField(_("code"), max_length=32, validators=[RegexValidator(r"^[A-Z0-9_-]{2,32}$")])
    name = models.CharField(_("name"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100, blank=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    tier = models.CharField(_("tier"), max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    annual_fee = MoneyField(_("annual fee"), max_digits=12, decimal_places=2, default_currency="CNY", default=0)
    earning_rates = models.JSONField(
        _("earning rates"), default=dict, blank=True, help_text=_('Points per CNY 1 by category, e.g. {"dining": "2"}.')
    )
    cashback_rates = models.JSONField(
        _("cashback rates"),
        default=dict,
        blank=True,
        help_text=_('Cashback fraction by category, e.g. {"fuel": "0.01"}.'),
    )
    included_benefits = models.TextField(_("included benefits"), blank=True)
    feature_tags = models.JSONField(_("feature tags"), default=list, blank=True)
    apply_url = models.URLField(
        _("apply at the bank"), blank=True, help_text=_("The issuing bank's application page for this card.")
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("card product")
        verbose_name_plural = _("card products")
        ordering = ("bank__code", "code")
        constraints = [models.UniqueConstraint(fields=["bank", "code"], name="cardproduct_code_unique_per_bank")]

    def __str__(self) -> str:
        return f"{self.bank.code} {self.name}"

    @property
    def local_name(self) -> str:
        return localized(self.name, self.name_en)


class BinRange(models.Model):
    """Maps the leading digits of a card number (6 to 8) to its issuing bank and product; longest prefix wins."""

    prefix = models.CharField(_("BIN prefix"), max_length=8, unique=True, validators=[RegexValidator(r"^\d{6,8}$")])
    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="bin_ranges", verbose_name=_("bank"))
    product = models.ForeignKey(
        CardProduct, on_delete=models.PROTECT, related_name="bin_ranges", verbose_name=_("product")
    )
    card_length = models.PositiveSmallIntegerField(_("card number length"), default=16)

    class Meta:
        verbose_name = _("BIN range")
        verbose_name_plural = _("BIN table")
        ordering = ("prefix",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(card_length__gte=13, card_length__lte=19), name="binrange_card_length_13_19"
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix} → {self.bank.code}/{self.product.code}"


class Cardholder(models.Model):
    """A person in the alliance. Name, phone and national ID are encrypted at rest; operators recognise a person by the
    masked name and the last four digits, and find one only by the exact name, phone or ID (through keyed hashes)."""

    # Never copied into audit snapshots (besides the `*_encrypted` and `*_hash` columns every model's are kept out of).
    AUDIT_REDACT = ("name_masked", "phone_last4", "national_id_last4")

    class VerificationLevel(models.IntegerChoices):
        BASIC = 1, _("basic (phone verified)")
        VERIFIED = 2, _("verified (ID checked)")
        STRONG = 3, _("strong (ID checked in person or by bank card)")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cardholder", verbose_name=_("user")
    )
    name_encrypted = models.TextField(_("name (encrypted)"), editable=False)
    name_hash = models.CharField(_("name hash"), max_length=64, db_index=True, editable=False)
    name_masked = models.CharField(_("name"), max_length=100, editable=False)
    phone_encrypted = models.TextField(_("phone (encrypted)"), editable=False)
    phone_hash = models.CharField(_("phone hash"), max_length=64, unique=True, editable=False)
    phone_last4 = models.CharField(_("phone last four"), max_length=4, editable=False)
    national_id_encrypted = models.TextField(_("national ID (encrypted)"), blank=True, editable=False)
    national_id_hash = models.CharField(_("national ID hash"), max_length=64, blank=True, db_index=True, editable=False)
    national_id_last4 = models.CharField(_("national ID last four"), max_length=4, blank=True, editable=False)
    verification_level = models.PositiveSmallIntegerField(
        _("verification level"), choices=VerificationLevel.choices, default=VerificationLevel.BASIC
    )
    segment_tags = models.JSONField(
        _("segments"),
        default=list,
        blank=True,
        help_text=_(
            "Tags such as dining or frequent_traveller. Targeted promotions read them only while the cardholder "
            "consents to personalised offers."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("cardholder")
        verbose_name_plural = _("cardholders")
        ordering = ("id",)

    def __str__(self) -> str:
        # Django's admin log and the audit log take their object_repr from here: masked, never the name itself.
        return f"{self.name_masked} ({self.masked_phone})"

    @property
    def display_name(self) -> str:
        """The name in the clear, decrypted when read; for the person's own pages, never for lists or logs."""
        return decrypt(self.name_encrypted) if self.name_encrypted else ""

    @display_name.setter
    def display_name(self, value: str) -> None:
        self.name_encrypted = encrypt(value)
        self.name_hash = name_hash(value)
        self.name_masked = mask_name(value)[:100]

    @property
    def masked_phone(self) -> str:
        return f"***-****-{self.phone_last4}"

    @property
    def masked_national_id(self) -> str:
        return f"**************{self.national_id_last4}" if self.national_id_last4 else ""


class BindingStatus(models.TextChoices):
    PENDING = "pending_verification", _("pending verification")
    ACTIVE = "active", _("active")
    FROZEN = "frozen", _("frozen")
    CLOSED = "closed", _("closed")


class Card(models.Model):
    """A tokenised card. The full number and CVV are never stored: token, BIN, last four and a keyed fingerprint."""

    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.PROTECT, related_name="cards", verbose_name=_("cardholder")
    )
    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="cards", verbose_name=_("bank"))
    product = models.ForeignKey(CardProduct, on_delete=models.PROTECT, related_name="cards", verbose_name=_("product"))
    token = models.CharField(_("token"), max_length=40, unique=True, editable=False)
    bin = models.CharField(_("BIN"), max_length=8)
    last4 = models.CharField(_("last four"), max_length=4)
    fingerprint = models.CharField(_("fingerprint"), max_length=64, db_index=True, editable=False)
    expiry_month = models.PositiveSmallIntegerField(_("expiry month"))
    expiry_year = models.PositiveSmallIntegerField(_("expiry year"))
    status = models.CharField(_("status"), max_length=24, choices=BindingStatus.choices, default=BindingStatus.PENDING)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)

    class Meta:
        verbose_name = _("card")
        verbose_name_plural = _("cards")
        ordering = ("id",)
        # A bank's cardholders and cards are scoped by EXISTS over a bank's cards of the cardholder: read from this
        # index alone.
        indexes = [models.Index(fields=["bank", "cardholder"], name="card_bank_cardholder")]
        constraints = [
            # One live binding per physical card across the whole alliance.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(status__in=["active", "frozen"]),
                name="card_one_live_binding_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=models.Q(expiry_month__gte=1, expiry_month__lte=12), name="card_expiry_month_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bank.code} •••• {self.last4}"


class LinkedAccount(models.Model):
    """A balance the cardholder holds at a member (bank account, wallet, prepaid), reached through a connector."""

    AUDIT_REDACT = ("reference",)  # the member's token for the account

    class Kind(models.TextChoices):
        BANK_ACCOUNT = "bank_account", _("bank account")
        WALLET = "wallet", _("wallet")
        PREPAID = "prepaid", _("prepaid balance")
        DIGITAL_RMB = "digital_rmb", _("digital RMB wallet")

    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.PROTECT, related_name="linked_accounts", verbose_name=_("cardholder")
    )
    bank = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, related_name="linked_accounts", verbose_name=_("bank")
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    reference = models.CharField(
        _("reference at the member"), max_length=64, unique=True, editable=False, help_text=_("The member's token.")
    )
    masked_number = models.CharField(_("number"), max_length=32)
    fingerprint = models.CharField(_("fingerprint"), max_length=64, db_index=True, editable=False)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=24, choices=BindingStatus.choices, default=BindingStatus.PENDING)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    activated_at = models.DateTimeField(_("activated"), null=True, blank=True)

    class Meta:
        verbose_name = _("linked account")
        verbose_name_plural = _("linked accounts")
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(status__in=["active", "frozen"]),
                name="linkedaccount_one_live_binding_per_fingerprint",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bank.code} {self.get_kind_display()} {self.masked_number}"


class BindingChallenge(models.Model):
    """One issuer verification of a card or account being bound (协议支付 signing). Mengka never sees the code:
    the issuer sends it to the phone it has on file and checks what the cardholder types."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        VERIFIED = "verified", _("verified")
        FAILED = "failed", _("failed (too many attempts)")
        EXPIRED = "expired", _("expired")

    bank = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, related_name="binding_challenges", verbose_name=_("bank")
    )
    card = models.ForeignKey(
        Card, null=True, blank=True, on_delete=models.PROTECT, related_name="challenges", verbose_name=_("card")
    )
    linked_account = models.ForeignKey(
        LinkedAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="challenges",
        verbose_name=_("linked account"),
    )
    issuer_reference = models.CharField(_("issuer reference"), max_length=64)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    max_attempts = models.PositiveSmallIntegerField(_("max attempts"), default=5)
    expires_at = models.DateTimeField(_("expires"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("binding challenge")
        verbose_name_plural = _("binding challenges")
        ordering = ("-id",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(card__isnull=False, linked_account__isnull=True)
                | models.Q(card__isnull=True, linked_account__isnull=False),
                name="bindingchallenge_exactly_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"challenge {self.pk} {self.status}"


class ConsentPurpose(models.TextChoices):
    SHARE_HOLDINGS = "share_holdings", _("share my holdings across member banks")
    PERSONALISED_OFFERS = "personalised_offers", _("personalised offers")
    MARKETING = "marketing", _("marketing messages")


class ConsentText(models.Model):
    """A published version of the text a cardholder agrees to for one purpose (PIPL: separate consent per purpose)."""

    purpose = models.CharField(_("purpose"), max_length=32, choices=ConsentPurpose.choices)
    version = models.PositiveIntegerField(_("version"))
    text_zh = models.TextField(_("text (Chinese)"))
    text_en = models.TextField(_("text (English)"))
    published_at = models.DateTimeField(_("published"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent text")
        verbose_name_plural = _("consent texts")
        ordering = ("purpose", "-version")
        constraints = [models.UniqueConstraint(fields=["purpose", "version"], name="consenttext_version_unique")]

    def __str__(self) -> str:
        return f"{self.purpose} v{self.version}"


class Consent(models.Model):
    """The current state of one cardholder's consent for one purpose; the code reads this row."""

    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.CASCADE, related_name="consents", verbose_name=_("cardholder")
    )
    purpose = models.CharField(_("purpose"), max_length=32, choices=ConsentPurpose.choices)
    granted = models.BooleanField(_("granted"), default=False)
    text = models.ForeignKey(
        ConsentText, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("text")
    )
    changed_at = models.DateTimeField(_("changed"), auto_now=True)

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [
            models.UniqueConstraint(fields=["cardholder", "purpose"], name="consent_one_per_purpose"),
        ]

    def __str__(self) -> str:
        return f"{self.cardholder_id} {self.purpose} {'granted' if self.granted else 'withdrawn'}"


class ConsentEvent(models.Model):
    """History: every grant and withdrawal, with the text version agreed. Never changed."""

    class Action(models.TextChoices):
        GRANTED = "granted", _("granted")
        WITHDRAWN = "withdrawn", _("withdrawn")

    cardholder = models.ForeignKey(
        Cardholder, on_delete=models.CASCADE, related_name="consent_events", verbose_name=_("cardholder")
    )
    purpose = models.CharField(_("purpose"), max_length=32, choices=ConsentPurpose.choices)
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    text = models.ForeignKey(
        ConsentText, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("text")
    )
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent event")
        verbose_name_plural = _("consent history")
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.cardholder_id} {self.purpose} {self.action}"
