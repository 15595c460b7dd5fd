"""The alliance's own records: inter-bank clearing (清算), the revenue share (按贡献度分配) and cardholder segments.

Clearing amounts on runs, positions and components are in the ledger's currency unit, ten-thousandths of the
currency (`rewards.models.CURRENCY_SCALE`); amounts named `…_minor` and instruction amounts are in minor units.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.lookups import Exact
from django.utils.translation import gettext_lazy as _

from members.models import Cardholder, MemberBank, localized
from merchants.models import Merchant

# --- clearing (清算) -------------------------------------------------------------------------------------------------

# The alliance's party code: sorts after every member code (A-Z, 0-9); see docs/clearing.md.
ALLIANCE_PARTY = "~alliance"


class ClearingRun(models.Model):
    """One clearing of one business day in one currency: the day's obligations netted to one position per party."""

    class Status(models.TextChoices):
        COMPUTING = "computing", _("computing")
        NETTED = "netted", _("netted")
        INSTRUCTING = "instructing", _("instructing")
        SETTLED = "settled", _("settled")
        FAILED = "failed", _("failed")

    business_day = models.DateField(_("business day"))
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.COMPUTING)
    transactions_count = models.PositiveIntegerField(_("ledger transactions"), default=0)
    entries_count = models.PositiveIntegerField(_("obligation entries"), default=0)
    positions_count = models.PositiveIntegerField(_("positions"), default=0)
    instructions_count = models.PositiveIntegerField(_("instructions"), default=0)
    gross = models.BigIntegerField(
        _("gross obligations"), default=0, help_text=_("Σ of what the parties receive before netting, in 0.0001.")
    )
    netted = models.BigIntegerField(
        _("net to settle"), default=0, help_text=_("Σ of the rounded positions to receive, in minor units.")
    )
    error = models.TextField(_("error"), blank=True, default="")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    netted_at = models.DateTimeField(_("netted at"), null=True, blank=True)
    settled_at = models.DateTimeField(_("settled at"), null=True, blank=True)

    class Meta:
        verbose_name = _("clearing run")
        verbose_name_plural = _("clearing runs")
        ordering = ("-business_day", "currency")
        constraints = [
            models.UniqueConstraint(fields=["business_day", "currency"], name="clearing_run_one_per_day_currency")
        ]

    def __str__(self) -> str:
        return f"{self.business_day} {self.currency}"


class ClearingPosition(models.Model):
    """A party's net position in a run: a member bank (its sponsored merchants' obligations included) or the
    alliance (`bank` empty). `net` is exact; `net_minor` is it rounded once, the runs' positions summing to zero."""

    run = models.ForeignKey(ClearingRun, on_delete=models.CASCADE, related_name="positions", verbose_name=_("run"))
    bank = models.ForeignKey(
        MemberBank,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("member bank"),
        help_text=_("Empty for the alliance's own position."),
    )
    party_code = models.CharField(_("party"), max_length=16)
    receivable = models.BigIntegerField(_("receivable"), default=0)
    payable = models.BigIntegerField(_("payable"), default=0)
    net = models.BigIntegerField(_("net (exact)"), default=0)
    net_minor = models.BigIntegerField(_("net (rounded)"), default=0)
    rounding = models.BigIntegerField(
        _("rounding adjustment"), default=0, help_text=_("Rounded net less exact net, in 0.0001.")
    )
    entries_count = models.PositiveIntegerField(_("obligation entries"), default=0)

    class Meta:
        verbose_name = _("clearing position")
        verbose_name_plural = _("clearing positions")
        ordering = ("run", "party_code")
        constraints = [models.UniqueConstraint(fields=["run", "party_code"], name="clearing_position_one_per_party")]

    def __str__(self) -> str:
        return f"{self.run} {self.party_code}"

    @property
    def is_alliance(self) -> bool:
        return self.bank_id is None


class ComponentKind(models.TextChoices):
    EXCHANGE_OUT = "exchange_out", _("points exchanged out")
    EXCHANGE_IN = "exchange_in", _("points exchanged in")
    EXCHANGE_FEE = "exchange_fee", _("exchange fee")
    EXCHANGE_REVERSAL = "exchange_reversal", _("exchange reversed")
    FUNDED_POINTS = "funded_points", _("funded points")
    BENEFIT_REDEMPTION = "benefit_redemption", _("benefit redemption")
    COFUNDING = "cofunding", _("promotion co-funding")
    REVERSAL = "reversal", _("reversal")
    OTHER = "other", _("other")


class ClearingComponent(models.Model):
    """What makes up a position: per kind of obligation (and per merchant when carried for one), how many entries,
    what they brought in and took out."""

    run = models.ForeignKey(ClearingRun, on_delete=models.CASCADE, related_name="components", verbose_name=_("run"))
    position = models.ForeignKey(
        ClearingPosition,
        on_delete=models.CASCADE,
        related_name="components",
        verbose_name=_("position"),
    )
    bank = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("member bank")
    )
    kind = models.CharField(_("kind"), max_length=24, choices=ComponentKind.choices)
    merchant = models.ForeignKey(
        Merchant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("merchant"),
        help_text=_("The sponsored merchant whose obligations the bank carries; empty for the bank's own."),
    )
    count = models.PositiveIntegerField(_("entries"), default=0)
    receivable = models.BigIntegerField(_("receivable"), default=0)
    payable = models.BigIntegerField(_("payable"), default=0)
    amount = models.BigIntegerField(_("net"), default=0)

    class Meta:
        verbose_name = _("clearing component")
        verbose_name_plural = _("clearing components")
        ordering = ("position", "merchant", "kind")
        indexes = [models.Index(fields=["run", "bank"], name="clearing_component_run_bank")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d}"


class ClearingInstruction(models.Model):
    """A rounded non-zero position turned into money moving through the clearing channel: a payer pays into it, a
    receiver is paid out of it. `reference` is the channel's idempotency key: the same reference is the same
    instruction, never a second one."""

    class Direction(models.TextChoices):
        PAY = "pay", _("pay")
        RECEIVE = "receive", _("receive")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        CONFIRMED = "confirmed", _("confirmed")
        FAILED = "failed", _("failed")

    run = models.ForeignKey(ClearingRun, on_delete=models.CASCADE, related_name="instructions", verbose_name=_("run"))
    position = models.OneToOneField(
        ClearingPosition, on_delete=models.CASCADE, related_name="instruction", verbose_name=_("position")
    )
    bank = models.ForeignKey(
        MemberBank, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("member bank")
    )
    party_code = models.CharField(_("party"), max_length=16)
    direction = models.CharField(_("direction"), max_length=8, choices=Direction.choices)
    amount = models.BigIntegerField(_("amount"))
    currency = models.CharField(_("currency"), max_length=3)
    reference = models.CharField(_("reference"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    resends = models.PositiveSmallIntegerField(
        _("resends"), default=0, help_text=_("Times an operator sent it again under a new reference after it failed.")
    )
    channel_id = models.CharField(_("channel's id"), max_length=64, blank=True, default="")
    channel_answer = models.JSONField(_("channel's answer"), default=dict, blank=True)
    failure_reason = models.CharField(_("failure reason"), max_length=100, blank=True, default="")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("clearing instruction")
        verbose_name_plural = _("clearing instructions")
        ordering = ("run", "party_code")
        permissions = [("resend_clearinginstruction", "Can send a failed clearing instruction again")]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="clearing_instruction_positive")]
        indexes = [
            models.Index(
                fields=["status", "sent_at"],
                name="clearing_instruction_open",
                condition=models.Q(status__in=["pending", "sent"]),
            )
        ]

    def __str__(self) -> str:
        return self.reference


# --- end of clearing -----------------------------------------------------------------------------------------------


# --- revenue share (按贡献度分配): see docs/revenue-share.md ---------------------------------------------------------


class Metric(models.TextChoices):
    """What a bank contributes, measured per month by one SQL statement each (`alliance/metrics.py`)."""

    BENEFITS = "benefits", _("benefits taken by other banks' cardholders")
    ACTIVE_CARDHOLDERS = "active_cardholders", _("active cardholders")
    ISSUER_VOLUME = "issuer_volume", _("issuer volume")
    MERCHANTS_SPONSORED = "merchants_sponsored", _("merchants sponsored")
    SPONSORED_VOLUME = "sponsored_volume", _("sponsored merchants' volume")
    POINTS_EXCHANGED_IN = "points_exchanged_in", _("points exchanged in")


METRICS: tuple[str, ...] = tuple(Metric.values)
# How each metric's value is counted: "units" (ten-thousandths of CNY), "fen" (minor units of CNY) or "count".
METRIC_UNITS: dict[str, str] = {
    Metric.BENEFITS: "units",
    Metric.ACTIVE_CARDHOLDERS: "count",
    Metric.ISSUER_VOLUME: "fen",
    Metric.MERCHANTS_SPONSORED: "count",
    Metric.SPONSORED_VOLUME: "fen",
    Metric.POINTS_EXCHANGED_IN: "units",
}


class Approval(models.TextChoices):
    DRAFT = "draft", _("draft")
    APPROVED = "approved", _("approved")


class FourEyesVersion(models.Model):
    """A version of terms that applies from a month on. A draft is edited by alliance operators and submitted through
    the approval queue (`core.approvals`, kind "alliance.revenue_share_terms"); another alliance operator's approval
    makes it approved, a rejection leaves it a draft. An approved version is never edited: a change is a new version.
    For a month, the approved version with the latest `effective_from` not after it applies, and of two from the same
    month the later one. Who made and who checked it: the approval request whose result it is."""

    effective_from = models.DateField(_("effective from (month)"), help_text=_("The first day of a month."))
    status = models.CharField(_("status"), max_length=16, choices=Approval.choices, default=Approval.DRAFT)
    reason = models.TextField(_("reason for the change"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(condition=Q(effective_from__day=1), name="%(class)s_starts_on_first_of_month"),
        ]


def _weight_field(label: Any) -> models.DecimalField[Decimal, Decimal]:
    return models.DecimalField(label, max_digits=5, decimal_places=4, default=Decimal(0))


class RevenueSharePolicy(FourEyesVersion):
    """One version of the revenue-share weights: a weight per metric for the pool and one for the running costs, each
    set between 0 and 1 and summing to exactly 1 (0.25 is a quarter)."""

    version = models.PositiveIntegerField(_("version"), unique=True)
    weight_benefits = _weight_field(_("weight: benefits"))
    weight_active_cardholders = _weight_field(_("weight: active cardholders"))
    weight_issuer_volume = _weight_field(_("weight: issuer volume"))
    weight_merchants_sponsored = _weight_field(_("weight: merchants sponsored"))
    weight_sponsored_volume = _weight_field(_("weight: sponsored volume"))
    weight_points_exchanged_in = _weight_field(_("weight: points exchanged in"))
    cost_weight_benefits = _weight_field(_("cost weight: benefits"))
    cost_weight_active_cardholders = _weight_field(_("cost weight: active cardholders"))
    cost_weight_issuer_volume = _weight_field(_("cost weight: issuer volume"))
    cost_weight_merchants_sponsored = _weight_field(_("cost weight: merchants sponsored"))
    cost_weight_sponsored_volume = _weight_field(_("cost weight: sponsored volume"))
    cost_weight_points_exchanged_in = _weight_field(_("cost weight: points exchanged in"))

    class Meta:
        verbose_name = _("revenue-share policy")
        verbose_name_plural = _("revenue-share policies")
        ordering = ("-version",)
        permissions = [("approve_terms", "Can submit and approve revenue-share terms")]
        constraints = [
            *FourEyesVersion.Meta.constraints,
            models.CheckConstraint(
                condition=Q(
                    weight_benefits__gte=0,
                    weight_active_cardholders__gte=0,
                    weight_issuer_volume__gte=0,
                    weight_merchants_sponsored__gte=0,
                    weight_sponsored_volume__gte=0,
                    weight_points_exchanged_in__gte=0,
                    cost_weight_benefits__gte=0,
                    cost_weight_active_cardholders__gte=0,
                    cost_weight_issuer_volume__gte=0,
                    cost_weight_merchants_sponsored__gte=0,
                    cost_weight_sponsored_volume__gte=0,
                    cost_weight_points_exchanged_in__gte=0,
                ),
                name="revenuesharepolicy_weights_non_negative",
            ),
            models.CheckConstraint(
                condition=Exact(
                    F("weight_benefits")
                    + F("weight_active_cardholders")
                    + F("weight_issuer_volume")
                    + F("weight_merchants_sponsored")
                    + F("weight_sponsored_volume")
                    + F("weight_points_exchanged_in"),
                    Decimal(1),
                ),
                name="revenuesharepolicy_weights_sum_to_one",
            ),
            models.CheckConstraint(
                condition=Exact(
                    F("cost_weight_benefits")
                    + F("cost_weight_active_cardholders")
                    + F("cost_weight_issuer_volume")
                    + F("cost_weight_merchants_sponsored")
                    + F("cost_weight_sponsored_volume")
                    + F("cost_weight_points_exchanged_in"),
                    Decimal(1),
                ),
                name="revenuesharepolicy_cost_weights_sum_to_one",
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version} from {self.effective_from:%Y-%m} ({self.get_status_display()})"

    def weights(self) -> dict[str, Decimal]:
        return {metric: getattr(self, f"weight_{metric}") for metric in METRICS}

    def cost_weights(self) -> dict[str, Decimal]:
        return {metric: getattr(self, f"cost_weight_{metric}") for metric in METRICS}


class MembershipFee(FourEyesVersion):
    """A bank's monthly membership fee from a month on (fen); the latest approved version not after a month applies.
    A bank pays none until its first version; a version of 0 stops it."""

    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="+", verbose_name=_("bank"))
    amount = models.BigIntegerField(_("monthly fee (fen)"))

    class Meta:
        verbose_name = _("membership fee")
        verbose_name_plural = _("membership fees")
        ordering = ("bank__code", "-effective_from", "-id")
        constraints = [
            *FourEyesVersion.Meta.constraints,
            models.CheckConstraint(condition=Q(amount__gte=0), name="membershipfee_amount_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.bank_id} from {self.effective_from:%Y-%m}: {self.amount}"


class AllianceCost(models.Model):
    """A running cost of the alliance in a month (fen), shared among the banks by the policy's cost weights."""

    month = models.DateField(_("month"), help_text=_("The first day of the month the cost belongs to."))
    amount = models.BigIntegerField(_("amount (fen)"))
    description = models.CharField(_("description"), max_length=200)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("alliance running cost")
        verbose_name_plural = _("alliance running costs")
        ordering = ("-month", "id")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="alliancecost_amount_positive"),
            models.CheckConstraint(condition=Q(month__day=1), name="alliancecost_month_first_day"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.description}"


class RevenueShareRun(models.Model):
    """One version of a month's revenue share. The same month run again with the same inputs, policy and result is
    the same version; anything different is a new version (a restatement) whose statements show the difference."""

    class Status(models.TextChoices):
        PROVISIONAL = "provisional", _("provisional (month still open)")
        FINAL = "final", _("final")
        SUPERSEDED = "superseded", _("superseded by a later version")

    month = models.DateField(_("month"))
    version = models.PositiveIntegerField(_("version"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    policy = models.ForeignKey(
        RevenueSharePolicy, on_delete=models.PROTECT, related_name="runs", verbose_name=_("policy")
    )
    fee_share_units = models.BigIntegerField(_("payment fee share (CNY, ten-thousandths)"))
    exchange_fee_units = models.BigIntegerField(_("exchange fees (CNY, ten-thousandths)"))
    membership_fees = models.BigIntegerField(_("membership fees (fen)"))
    pool = models.BigIntegerField(_("pool (fen)"))
    costs = models.BigIntegerField(_("running costs (fen)"))
    unpooled = models.JSONField(
        _("fee share in other currencies"),
        default=dict,
        blank=True,
        help_text=_("Currency → the alliance's fee share in hundredths of a minor unit, not pooled (CNY only)."),
    )
    totals = models.JSONField(_("metric totals"), default=dict)
    input_digest = models.CharField(_("digest of inputs, policy and result"), max_length=64)
    previous = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="next_version",
        verbose_name=_("previous version"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("run by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("revenue-share run")
        verbose_name_plural = _("revenue-share runs")
        ordering = ("-month", "-version")
        constraints = [
            models.UniqueConstraint(fields=["month", "version"], name="revenueshare_run_month_version"),
            models.CheckConstraint(condition=Q(month__day=1), name="revenueshare_run_month_first_day"),
            models.CheckConstraint(condition=Q(version__gte=1), name="revenueshare_run_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} v{self.version}"


class RevenueShareStatement(models.Model):
    """A bank's part of a run: each metric's value with its weight and share (`lines`), the share of the pool, the
    part of the running costs, and the net, with the difference from the previous version's statement."""

    run = models.ForeignKey(RevenueShareRun, on_delete=models.PROTECT, related_name="statements", verbose_name=_("run"))
    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="+", verbose_name=_("bank"))
    benefits = models.BigIntegerField(_("benefits taken by others (CNY, ten-thousandths)"), default=0)
    active_cardholders = models.BigIntegerField(_("active cardholders"), default=0)
    issuer_volume = models.BigIntegerField(_("issuer volume (fen)"), default=0)
    merchants_sponsored = models.BigIntegerField(_("merchants sponsored"), default=0)
    sponsored_volume = models.BigIntegerField(_("sponsored volume (fen)"), default=0)
    points_exchanged_in = models.BigIntegerField(_("points exchanged in (CNY, ten-thousandths)"), default=0)
    share = models.DecimalField(_("share of the pool"), max_digits=16, decimal_places=12)
    cost_share = models.DecimalField(_("share of the costs"), max_digits=16, decimal_places=12)
    amount = models.BigIntegerField(_("share (fen)"))
    cost = models.BigIntegerField(_("cost part (fen)"))
    net = models.BigIntegerField(_("net (fen)"))
    lines = models.JSONField(_("metric lines"), default=list)
    previous = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("previous version's statement"),
    )
    amount_difference = models.BigIntegerField(_("share difference (fen)"), null=True, blank=True)
    cost_difference = models.BigIntegerField(_("cost difference (fen)"), null=True, blank=True)
    net_difference = models.BigIntegerField(_("net difference (fen)"), null=True, blank=True)

    class Meta:
        verbose_name = _("revenue-share statement")
        verbose_name_plural = _("revenue-share statements")
        ordering = ("-run__month", "-run__version", "bank__code")
        constraints = [
            models.UniqueConstraint(fields=["run", "bank"], name="revenueshare_statement_one_per_bank"),
            models.CheckConstraint(condition=Q(net=F("amount") - F("cost")), name="revenueshare_statement_net"),
        ]

    def __str__(self) -> str:
        return f"{self.run} {self.bank_id}"


# --- end of revenue share ------------------------------------------------------------------------------------------


# --- segments: see docs/segments.md --------------------------------------------------------------------------------

SEGMENT_CODE = r"^[a-z0-9_-]{1,32}\Z"
MAX_SEGMENT_WINDOW_DAYS = 730


class SegmentRule(models.Model):
    """A segment the nightly job derives from payment history: a cardholder who consents to personalised offers
    carries the tag `code` while their captured payments (net of refunds) in `categories` over the last
    `window_days` reach both thresholds. `version` goes up whenever what qualifies changes."""

    code = models.CharField(
        _("tag"),
        max_length=32,
        unique=True,
        validators=[RegexValidator(SEGMENT_CODE)],
        help_text=_("The tag written on cardholders and named by promotions: lowercase letters, digits, _ and -."),
    )
    name = models.CharField(_("label (Chinese)"), max_length=60)
    name_en = models.CharField(_("label (English)"), max_length=60)
    description = models.TextField(
        _("explanation (Chinese)"), blank=True, help_text=_("Shown to cardholders beside the rule in words.")
    )
    description_en = models.TextField(_("explanation (English)"), blank=True)
    categories = models.JSONField(
        _("spend categories"), default=list, blank=True, help_text=_("Payments of these categories count; none: all.")
    )
    window_days = models.PositiveSmallIntegerField(_("window (days)"), default=90)
    min_payments = models.PositiveIntegerField(
        _("at least this many payments"), default=0, help_text=_("0: no minimum count.")
    )
    min_amount = models.BigIntegerField(
        _("at least this much spent (fen)"), default=0, help_text=_("CNY minor units, net of refunds; 0: no minimum.")
    )
    active = models.BooleanField(_("active"), default=True, help_text=_("Inactive: the job removes its tag."))
    version = models.PositiveIntegerField(_("version"), default=1, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("segment rule")
        verbose_name_plural = _("segment rules")
        ordering = ("code",)
        constraints = [
            models.CheckConstraint(condition=Q(code__regex=SEGMENT_CODE), name="segmentrule_code_format"),
            models.CheckConstraint(
                condition=Q(window_days__gte=1, window_days__lte=MAX_SEGMENT_WINDOW_DAYS),
                name="segmentrule_window_in_range",
            ),
            models.CheckConstraint(condition=Q(min_amount__gte=0), name="segmentrule_min_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(min_payments__gt=0) | Q(min_amount__gt=0), name="segmentrule_has_a_threshold"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def local_name(self) -> str:
        return localized(self.name, self.name_en)

    @property
    def local_description(self) -> str:
        return localized(self.description, self.description_en)


class SegmentMembership(models.Model):
    """Why a cardholder carries a rule's tag: the figures that qualified them when the job last found them changed
    (payments and net spend in the window up to `computed_at`), under the rule's version then. Removed with the tag,
    and at once when the cardholder withdraws consent to personalised offers."""

    cardholder = models.ForeignKey(Cardholder, on_delete=models.CASCADE, related_name="+", verbose_name=_("cardholder"))
    rule = models.ForeignKey(SegmentRule, on_delete=models.PROTECT, related_name="memberships", verbose_name=_("rule"))
    tag = models.CharField(_("tag"), max_length=32)
    rule_version = models.PositiveIntegerField(_("rule version"))
    window_days = models.PositiveSmallIntegerField(_("window (days)"))
    payments_count = models.PositiveIntegerField(_("payments"))
    amount = models.BigIntegerField(_("net spend (fen)"))
    computed_at = models.DateTimeField(_("computed"))

    class Meta:
        verbose_name = _("segment membership")
        verbose_name_plural = _("segment memberships")
        ordering = ("cardholder", "tag")
        constraints = [
            models.UniqueConstraint(fields=["cardholder", "rule"], name="segmentmembership_one_per_rule"),
        ]
        indexes = [models.Index(fields=["rule"], name="segmentmembership_rule")]

    def __str__(self) -> str:
        return f"{self.cardholder_id} {self.tag}"
