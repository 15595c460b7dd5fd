"""Merchants: portal forms (parse input only; the rules are in services)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from members.models import MemberBank, SpendCategory


class NeverEchoedInput(forms.TextInput):
    def format_value(self, value: Any) -> str | None:
        return None


class MerchantApplicationForm(forms.Form):
    legal_name = forms.CharField(label=_("Legal name"), max_length=200)
    display_name = forms.CharField(label=_("Display name"), max_length=100)
    credit_code = forms.CharField(label=_("Unified social credit code"), min_length=18, max_length=18)
    category_code = forms.RegexField(label=_("Merchant category code (MCC)"), regex=r"^\d{4}$")
    spend_category = forms.ChoiceField(label=_("Spend category"), choices=SpendCategory.choices)
    sponsor_bank = forms.ModelChoiceField(label=_("Sponsor bank"), queryset=MemberBank.objects.none())
    settlement_account_name = forms.CharField(label=_("Settlement account name"), max_length=200)
    settlement_bank_name = forms.CharField(label=_("Settlement bank"), max_length=100)
    settlement_account_number = forms.CharField(
        label=_("Settlement account number"), max_length=40, widget=NeverEchoedInput(attrs={"inputmode": "numeric"})
    )
    contact_name = forms.CharField(label=_("Contact name"), max_length=100)
    contact_phone = forms.RegexField(label=_("Contact phone"), regex=r"^\+?[0-9 -]{6,20}$")
    contact_email = forms.EmailField(label=_("Contact email"))
    store_name = forms.CharField(label=_("First store"), max_length=100)
    store_city = forms.CharField(label=_("City"), max_length=64)

    def __init__(self, *args: Any, banks: QuerySet[MemberBank], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sponsor_bank"].queryset = banks  # type: ignore[attr-defined]
