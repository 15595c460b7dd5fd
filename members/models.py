from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class MemberBank(models.Model):
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


class BankOperator(models.Model):
    """A staff user working for a member bank: an operator (read-write) or an auditor (read-only)."""

    class Role(models.TextChoices):
        OPERATOR = "operator", _("operator")
        AUDITOR = "auditor", _("auditor")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bank_roles")
    bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="operators")
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.OPERATOR)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("bank operator")
        verbose_name_plural = _("bank operators")
        constraints = [models.UniqueConstraint(fields=["user", "bank"], name="bankoperator_one_role_per_bank")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.bank.code} ({self.role})"
