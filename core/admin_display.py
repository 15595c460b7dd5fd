"""Amounts shown as money in the admin.

Models keep integer minor units (or finer: fee splits in 1/100 of a minor unit, ledger currency units in
ten-thousandths). An admin names its amount columns in `money_fields` — field name → where the currency is, and how
many decimals finer than the currency's minor unit the integer is — and wherever that field would be shown (change
lists, change pages, inlines) it is shown as "1,288.00 CNY" instead. Forms that edit an amount stay in minor units,
with labels that say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from .money import MINOR_UNIT_EXPONENT


@dataclass(frozen=True)
class MoneyField:
    """`currency`: an attribute path to the currency ("currency", "intent.currency"), or the code itself ("CNY");
    `finer`: decimals below the minor unit (2 for 1/100 of a minor unit); `absolute`: the integer's exponent whatever
    the currency (4 for ten-thousandths of a unit); `label`: the column's name when the field's own names its unit."""

    currency: str = "currency"
    finer: int = 0
    absolute: int | None = None
    label: Any = None


def money_text(amount: int | None, currency: str, *, finer: int = 0, absolute: int | None = None) -> str:
    """An integer amount as text with its currency: "1,288.00 CNY"; the amount as it is when the currency is unknown
    (a points unit)."""
    if amount is None:
        return "-"
    if currency not in MINOR_UNIT_EXPONENT:
        return f"{amount:,}"
    places = absolute if absolute is not None else MINOR_UNIT_EXPONENT[currency] + finer
    return f"{Decimal(amount).scaleb(-places):,.{places}f} {currency}"


def _currency_of(obj: Any, spec: MoneyField) -> str:
    if spec.currency in MINOR_UNIT_EXPONENT:
        return spec.currency
    value: Any = obj
    for part in spec.currency.split("."):
        value = getattr(value, part, None) if value is not None else None
    return str(value or "")


def _column(model: type[models.Model], name: str, spec: MoneyField) -> Callable[[Any], str]:
    label = spec.label
    if label is None:
        field = model._meta.get_field(name)
        label = getattr(field, "verbose_name", name)

    @admin.display(description=label, ordering=name)
    def column(obj: Any) -> str:
        return money_text(getattr(obj, name), _currency_of(obj, spec), finer=spec.finer, absolute=spec.absolute)

    return column


class MoneyColumnsMixin:
    """Shows the fields named in `money_fields` as money wherever the admin shows them rather than takes them as
    input: change lists, read-only change pages and inlines, read-only fields. The swap is made where Django reads the
    page's layout (`get_fieldsets`, `get_list_display`), after every other mixin has chosen the fields."""

    money_fields: ClassVar[dict[str, MoneyField]] = {}
    model: type[models.Model]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, spec in self.money_fields.items():
            setattr(self, _shown(name), _column(self.model, name, spec))

    def get_list_display(self, request: HttpRequest) -> Any:
        editable = set(getattr(self, "list_editable", ()))
        names = super().get_list_display(request)  # type: ignore[misc]
        return [_shown(n) if isinstance(n, str) and n in self.money_fields and n not in editable else n for n in names]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return readonly + [_shown(name) for name in readonly if name in self.money_fields]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if not self.money_fields:
            return fieldsets
        everything = not self.has_change_permission(request, obj)  # type: ignore[attr-defined]
        readonly = set(super().get_readonly_fields(request, obj))  # type: ignore[misc]

        def swap(name: Any) -> Any:
            if isinstance(name, (list, tuple)):
                return type(name)(swap(inner) for inner in name)
            shown = isinstance(name, str) and name in self.money_fields and (everything or name in readonly)
            return _shown(name) if shown else name

        return [(title, {**options, "fields": swap(options["fields"])}) for title, options in fieldsets]


def _shown(name: str) -> str:
    return f"{name}_as_money"
