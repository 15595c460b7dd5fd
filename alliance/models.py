"""The alliance's own records: inter-bank clearing (清算).

Amounts on runs, positions and components are in the ledger's currency unit, ten-thousandths
of the currency (`rewards.models.CURRENCY_SCALE`); amounts named `…_minor` and instruction amounts are in minor units.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from members.models import MemberBank
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
    FUNDED_POINTS = "funded_points", _("funded points")
    BENEFIT_REDEMPTION = "benefit_redemption", _("benefit redemption")
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
