"""Amounts in the admin read as money — "1,288.00 CNY" — wherever they are shown, never as raw minor units."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from core.admin_display import money_text
from payments.models import FeeSplit, PaymentIntent
from rewards.models import Entry
from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    client = Client()
    assert client.login(username=AllianceOperatorFactory().username, password=PASSWORD)
    return client


@pytest.mark.parametrize(
    ("amount", "currency", "options", "text"),
    [
        (128800, "CNY", {}, "1,288.00 CNY"),
        (5, "CNY", {}, "0.05 CNY"),
        (-250, "HKD", {}, "-2.50 HKD"),
        (1288, "JPY", {}, "1,288 JPY"),
        (125, "CNY", {"finer": 2}, "0.0125 CNY"),
        (12_880_000, "CNY", {"absolute": 4}, "1,288.0000 CNY"),
        (1288, "HXP", {}, "1,288"),  # a points unit: points, as they are
        (None, "CNY", {}, "-"),
    ],
)
def test_money_text(amount: Any, currency: str, options: dict[str, int], text: str) -> None:
    assert money_text(amount, currency, **options) == text


def test_a_payment_reads_as_money_on_its_page_and_in_the_list(operator: Client) -> None:
    payment = FACTORIES["payments.paymentintent"]()
    PaymentIntent.objects.filter(pk=payment.pk).update(amount=128800, amount_captured=128800, fee=77280)
    page = operator.get(reverse("admin:payments_paymentintent_change", args=[payment.pk])).content.decode()
    assert "1,288.00 CNY" in page
    assert "7.7280 CNY" in page  # the fee, kept in 1/100 of a fen: 77280 of them, shown to that precision
    assert "128800" not in page
    assert "1/100 minor unit" not in page
    listing = operator.get(reverse("admin:payments_paymentintent_changelist")).content.decode()
    assert "1,288.00 CNY" in listing
    assert "128800" not in listing
    ordered = operator.get(reverse("admin:payments_paymentintent_changelist"), {"o": "3"})
    assert ordered.status_code == 200  # the money column still sorts by the amount


def test_fee_splits_read_as_money_to_a_fraction_of_a_fen(operator: Client) -> None:
    split = FACTORIES["payments.feesplit"]()
    FeeSplit.objects.filter(pk=split.pk).update(amount=3625)
    listing = operator.get(reverse("admin:payments_feesplit_changelist")).content.decode()
    assert "0.3625 CNY" in listing
    page = operator.get(reverse("admin:payments_feesplit_change", args=[split.pk])).content.decode()
    assert "0.3625 CNY" in page
    inline = operator.get(reverse("admin:payments_paymentintent_change", args=[split.payment_id])).content.decode()
    assert "0.3625 CNY" in inline


def test_ledger_entries_in_a_currency_read_as_money_and_points_as_points(operator: Client) -> None:
    entry = FACTORIES["rewards.entry"]()
    listing = operator.get(reverse("admin:rewards_entry_changelist")).content.decode()
    assert f"{entry.amount:,}" in listing  # a points unit: points, as they are
    column = admin.site.get_model_admin(Entry).amount_as_money  # type: ignore[attr-defined]
    assert column(Entry(amount=12_880_000, unit="CNY")) == "1,288.0000 CNY"  # ten-thousandths of a yuan
    assert column(Entry(amount=-5, unit="CNY")) == "-0.0005 CNY"
    assert column(Entry(amount=12_880_000, unit="HXP")) == "12,880,000"
