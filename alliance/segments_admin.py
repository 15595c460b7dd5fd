"""Segments in the admin: the rules (alliance operators keep them; every change audited, a new version when what
qualifies changes) and the derivations the nightly job recorded (read only, alliance operators)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils.translation import gettext_lazy

from core.admin_base import ReadOnlyAdminMixin, ScopedAdmin
from core.admin_display import MoneyField
from core.errors import MengkaError
from members.models import SpendCategory

from . import services
from .models import SegmentMembership, SegmentRule

CNY = MoneyField("CNY")


class SegmentRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    categories = forms.MultipleChoiceField(
        label=gettext_lazy("spend categories"),
        choices=SpendCategory.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("Payments of these categories count; none ticked: all."),
    )

    class Meta:
        model = SegmentRule
        fields = (
            "code",
            "name",
            "name_en",
            "description",
            "description_en",
            "categories",
            "window_days",
            "min_payments",
            "min_amount",
            "active",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            data["categories"] = services.segment_rule_check(
                categories=data.get("categories") or [],
                window_days=data.get("window_days"),
                min_payments=data.get("min_payments"),
                min_amount=data.get("min_amount"),
            )
        except MengkaError as exc:
            field = exc.param if exc.param in self.fields else None
            self.add_error(field, exc.message)
        return data


class SegmentRuleAdmin(ScopedAdmin):
    """Never deleted (a rule's derivations point at it): an inactive rule's tags are removed by the next run."""

    alliance_only = True
    form = SegmentRuleForm
    list_display = ("code", "name", "name_en", "categories_text", "window_days", "min_payments", "min_amount",
                    "active", "version", "members")  # fmt: skip
    list_filter = ("active",)
    search_fields = ("code", "name", "name_en")
    readonly_fields = ("version", "updated_at")
    money_fields = {"min_amount": CNY}

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return super().get_queryset(request).annotate(members_count=models.Count("memberships"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fixed = ("code",) if obj is not None else ()
        return (*fixed, *super().get_readonly_fields(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("spend categories"))
    def categories_text(self, obj: SegmentRule) -> str:
        labels = dict(SpendCategory.choices)
        return ", ".join(str(labels.get(value, value)) for value in obj.categories) or str(gettext_lazy("all"))

    @admin.display(description=gettext_lazy("cardholders"), ordering="members_count")
    def members(self, obj: SegmentRule) -> int:
        return int(getattr(obj, "members_count", 0))

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        assert isinstance(obj, SegmentRule)
        obj.version = services.segment_rule_version(obj)
        super().save_model(request, obj, form, change)  # audited there, before and after


class SegmentMembershipAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Why a cardholder carries a tag, as the job last found it. Removed with the tag or the consent."""

    alliance_only = True
    list_display = ("cardholder", "tag", "payments_count", "amount", "window_days", "rule_version", "computed_at")
    list_filter = ("rule",)
    list_select_related = ("cardholder", "rule")
    money_fields = {"amount": CNY}


admin.site.register(SegmentRule, SegmentRuleAdmin)
admin.site.register(SegmentMembership, SegmentMembershipAdmin)
