"""Payments: portal forms (parse input only; the services decide)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from members.models import Cardholder
from members.selectors import cards_of, linked_accounts_of


def funding_choices(cardholder: Cardholder) -> list[tuple[str, str]]:
    """Active cards as "card:<id>" and active accounts as "account:<id>"."""
    choices = [
        (f"card:{card.pk}", f"{card.bank.code} {card.product.local_name} •••• {card.last4}")
        for card in cards_of(cardholder)
        if card.status == "active"
    ]
    choices += [
        (f"account:{account.pk}", str(account))
        for account in linked_accounts_of(cardholder)
        if account.status == "active"
    ]
    return choices


class FundingForm(forms.Form):
    source = forms.ChoiceField(label=_("Pay with"))

    def __init__(self, *args: Any, cardholder: Cardholder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        source = self.fields["source"]
        assert isinstance(source, forms.ChoiceField)
        source.choices = funding_choices(cardholder)

    def source_ids(self) -> tuple[int | None, int | None]:
        kind, _, pk = self.cleaned_data["source"].partition(":")
        return (int(pk), None) if kind == "card" else (None, int(pk))


class PaymentCodeForm(FundingForm):
    use_points = forms.BooleanField(label=_("Pay part with my points"), required=False)


class AgreementForm(FundingForm):
    merchant_code = forms.CharField(label=_("Merchant code"), max_length=16)
    limit_per_payment = forms.DecimalField(label=_("Limit per payment (CNY)"), min_value=0.01, decimal_places=2)
    limit_per_month = forms.DecimalField(label=_("Limit per month (CNY)"), min_value=0.01, decimal_places=2)
