"""Payments: portal forms (parse input only; the services decide)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from members.models import Cardholder, SpendCategory
from members.selectors import cards_of, linked_accounts_of

from .cardholder_statement import StatementFilters


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


MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class StatementFilterForm(forms.Form):
    """The statement's filters, read from the query string (a GET form: works without JavaScript). The card list
    holds the cardholder's cards and linked accounts ("card:<id>", "account:<id>"), the bank list their banks."""

    card = forms.ChoiceField(label=_("Card"), required=False)
    bank = forms.ChoiceField(label=_("Bank"), required=False)
    month = forms.CharField(
        label=_("Month"), required=False, max_length=7, widget=forms.TextInput(attrs={"type": "month"})
    )
    category = forms.ChoiceField(
        label=_("Category"), required=False, choices=[("", _("All categories")), *SpendCategory.choices]
    )
    q = forms.CharField(label=_("Search"), required=False, max_length=64, strip=True)

    def __init__(self, *args: Any, cardholder: Cardholder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cards = list(cards_of(cardholder, include_closed=True))
        accounts = list(linked_accounts_of(cardholder))
        sources: list[tuple[str, Any]] = [("", _("All cards"))]
        sources += [(f"card:{card.pk}", f"{card.bank.local_name} •••• {card.last4}") for card in cards]
        sources += [(f"account:{a.pk}", f"{a.bank.local_name} {a.masked_number}") for a in accounts]
        banks = {card.bank.pk: card.bank.local_name for card in cards}
        banks.update({account.bank.pk: account.bank.local_name for account in accounts})
        card_field, bank_field = self.fields["card"], self.fields["bank"]
        assert isinstance(card_field, forms.ChoiceField)
        assert isinstance(bank_field, forms.ChoiceField)
        card_field.choices = sources
        bank_field.choices = [("", _("All banks")), *((str(pk), name) for pk, name in sorted(banks.items()))]

    def clean_month(self) -> dt.date | None:
        value = self.cleaned_data["month"]
        if not value:
            return None
        match = MONTH.match(value)
        if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
            raise forms.ValidationError(_("Give the month as YYYY-MM, e.g. 2026-03."))
        return dt.date(int(match.group(1)), int(match.group(2)), 1)

    def filters(self) -> StatementFilters:
        data = self.cleaned_data
        kind, _sep, pk = (data.get("card") or "").partition(":")
        return StatementFilters(
            card_id=int(pk) if kind == "card" else None,
            account_id=int(pk) if kind == "account" else None,
            bank_id=int(data["bank"]) if data.get("bank") else None,
            month=data.get("month"),
            category=data.get("category") or "",
            search=data.get("q") or "",
        )
