"""The cardholder portal's forms in alliance: find my best card."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from core.errors import ValidationFailed
from members.models import SpendCategory
from rewards.models import Benefit

from .services import best_card

COMPARE = "compare"
IMPORT = "import"


def spend_field(category: str) -> str:
    return f"spend_{category}"


def uses_field(kind: str) -> str:
    return f"uses_{kind}"


class BestCardForm(forms.Form):
    """Typical monthly spending by category (blank: nothing), how often a year each kind of privilege would be used,
    and, to fill the amounts from the cardholder's own payments, their consent to that use."""

    action = forms.ChoiceField(choices=((COMPARE, COMPARE), (IMPORT, IMPORT)), required=False)
    use_history = forms.BooleanField(
        label=_("Use my payment history for this: my last 12 months of payments, by category"),
        label_suffix="",
        required=False,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for category, label in SpendCategory.choices:
            self.fields[spend_field(category)] = forms.DecimalField(
                label=capfirst(label),
                required=False,
                min_value=Decimal(0),
                max_value=best_card.MAX_MONTHLY_SPEND,
                max_digits=9,
                decimal_places=2,
                widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"}),
            )
        for kind, label in Benefit.Kind.choices:
            self.fields[uses_field(kind)] = forms.IntegerField(
                label=capfirst(label),
                required=False,
                min_value=0,
                max_value=best_card.MAX_USES_PER_YEAR,
                widget=forms.NumberInput(attrs={"min": "0", "inputmode": "numeric"}),
            )

    @property
    def spend_fields(self) -> list[forms.BoundField]:
        return [self[spend_field(category)] for category in SpendCategory.values]

    @property
    def uses_fields(self) -> list[forms.BoundField]:
        return [self[uses_field(kind)] for kind in Benefit.Kind.values]

    @property
    def importing(self) -> bool:
        return self.data.get("action") == IMPORT

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["benefit_uses"] = {kind: data.get(uses_field(kind)) or 0 for kind in Benefit.Kind.values}
        if self.importing:
            if not data.get("use_history"):
                self.add_error(
                    "use_history", _("Tick the box to let this page use your payment history, or enter amounts.")
                )
            return data
        if self.errors:
            return data
        try:
            data["spending"] = best_card.spending_check(self.spending(data))
        except ValidationFailed as exc:
            self.add_error(spend_field(exc.param) if exc.param in SpendCategory.values else None, exc.message)
        return data

    @staticmethod
    def spending(data: dict[str, Any]) -> dict[str, Decimal]:
        return {category: data.get(spend_field(category)) or Decimal(0) for category in SpendCategory.values}
