"""Members: portal forms (parse input only; the rules are in services)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import ConsentPurpose, LinkedAccount, MemberBank


class NeverEchoedInput(forms.TextInput):
    """A text input that never renders the submitted value back into the page (card and account numbers)."""

    def format_value(self, value: Any) -> str | None:
        return None


class SignInForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput)


class CardBindForm(forms.Form):
    card_number = forms.CharField(
        label=_("Card number"),
        max_length=23,
        widget=NeverEchoedInput(attrs={"autocomplete": "cc-number", "inputmode": "numeric"}),
    )
    expiry = forms.CharField(
        label=_("Expiry (MM/YY)"), max_length=7, widget=forms.TextInput(attrs={"autocomplete": "cc-exp"})
    )

    def clean_expiry(self) -> tuple[int, int]:
        match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", self.cleaned_data["expiry"])
        if not match:
            raise forms.ValidationError(_("Enter the expiry date as MM/YY."))
        month, year = int(match.group(1)), int(match.group(2))
        return month, year + 2000 if year < 100 else year


class AccountLinkForm(forms.Form):
    bank = forms.ModelChoiceField(label=_("Member"), queryset=MemberBank.objects.none())
    kind = forms.ChoiceField(label=_("Kind"), choices=LinkedAccount.Kind.choices)
    account_number = forms.CharField(
        label=_("Account number"), max_length=40, widget=NeverEchoedInput(attrs={"autocomplete": "off"})
    )

    def __init__(self, *args: Any, banks: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["bank"].queryset = banks  # type: ignore[attr-defined]


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from the text message"),
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class ConsentForm(forms.Form):
    purpose = forms.ChoiceField(choices=ConsentPurpose.choices)
    action = forms.ChoiceField(choices=[("grant", "grant"), ("withdraw", "withdraw")])
