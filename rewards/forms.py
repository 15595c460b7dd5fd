"""The cardholder portal's points forms: an exchange between two of the cardholder's own programmes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from members.models import PointsProgram


class ProgramChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: PointsProgram) -> str:
        return f"{obj.local_name} ({obj.bank.code} · {obj.unit_code})"


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


class BenefitFilterForm(forms.Form):
    """The catalogue's filter: one kind of benefit, or all."""

    kind = forms.ChoiceField(label=_("Kind"), required=False)

    def __init__(self, *args: Any, kinds: list[tuple[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["kind"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", _("All kinds")), *kinds]


class BenefitQuoteForm(forms.Form):
    """A mix of the cardholder's programmes paying for a benefit: points per programme (field `p<id>`), and at most
    one programme that pays the rest of a CNY price (`rest`). Only the programmes passed in are fields: any other
    programme cannot be named."""

    rest = forms.TypedChoiceField(label=_("Pays the rest"), required=False, coerce=int, empty_value=None)

    def __init__(self, *args: Any, programs: list[PointsProgram], pays_rest: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.programs = programs
        for program in programs:
            self.fields[f"p{program.pk}"] = forms.IntegerField(
                label=f"{program.local_name} ({program.bank.code} · {program.unit_code})",
                required=False,
                min_value=1,
                max_value=10**12,
            )
        rest = self.fields["rest"]
        assert isinstance(rest, forms.TypedChoiceField)
        if pays_rest:
            rest.choices = [("", _("None: I give every programme's points")), *((p.pk, p.local_name) for p in programs)]
            rest.error_messages["invalid_choice"] = _("Choose one of your programmes.")
        else:
            del self.fields["rest"]

    def points(self) -> dict[int, int | None]:
        """The mix for the domain's pricing: programme id → points, or None for the one that pays the rest."""
        data = self.cleaned_data
        mix: dict[int, int | None] = {
            program.pk: data[f"p{program.pk}"] for program in self.programs if data.get(f"p{program.pk}")
        }
        if data.get("rest") is not None:
            mix[data["rest"]] = None
        return mix


class BenefitRedeemForm(BenefitQuoteForm):
    """The redemption itself: the card it is redeemed with (one of the cardholder's eligible cards) and the key the
    page was rendered with, so a double submit redeems once."""

    card = forms.TypedChoiceField(label=_("Card"), coerce=int)
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, cards: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        card = self.fields["card"]
        assert isinstance(card, forms.TypedChoiceField)
        card.choices = cards
        card.error_messages["invalid_choice"] = _("Choose one of your cards that may redeem this benefit.")
        self.order_fields(["card"])
