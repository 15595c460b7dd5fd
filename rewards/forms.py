"""The cardholder portal's points forms: an exchange between two of the cardholder's own programmes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from members.models import PointsProgram


class ProgramChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: PointsProgram) -> str:
        return f"{obj.name} ({obj.bank.code} · {obj.unit_code})"


class ExchangeQuoteForm(forms.Form):
    """From and to programme (only the cardholder's own: any other id is not a valid choice) and the points to move."""

    from_program = ProgramChoiceField(queryset=PointsProgram.objects.none(), label=_("From programme"))
    to_program = ProgramChoiceField(queryset=PointsProgram.objects.none(), label=_("To programme"))
    amount = forms.IntegerField(label=_("Points to exchange"), min_value=1, max_value=10**12)

    def __init__(self, *args: Any, programs: list[PointsProgram], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ids = [program.pk for program in programs]
        for name in ("from_program", "to_program"):
            field = self.fields[name]
            assert isinstance(field, ProgramChoiceField)
            field.queryset = PointsProgram.objects.filter(pk__in=ids).select_related("bank").order_by("bank__code")
        self.fields["from_program"].error_messages["invalid_choice"] = _("Choose one of your programmes.")
        self.fields["to_program"].error_messages["invalid_choice"] = _("Choose one of your programmes.")


class ExchangeForm(ExchangeQuoteForm):
    """The exchange itself, with the key the page was rendered with: submitting it twice exchanges once."""

    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)
