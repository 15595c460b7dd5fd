from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from members.models import MemberBank, SpendCategory


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
    sponsor_bank = models.ForeignKey(MemberBank, on_delete=models.PROTECT, related_name="sponsored_merchants")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")
        ordering = ("code",)

    def __str__(self) -> str:
        return f"{self.code} {self.display_name}"
