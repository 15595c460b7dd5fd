"""The points wallet in the portal: the total across banks in CNY, and exchanging points between the cardholder's own
programmes with a live quote, exactly once per rendered page, never into or out of a programme that is not theirs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from rewards import services as s
from rewards.models import LedgerTransaction
from tests.factories import BinRangeFactory, PointsProgramFactory, make_card, make_cardholder
from tests.rewards.portal import posted, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def wallet() -> dict[str, Any]:
    """A cardholder with 1,000 points at bank A (worth 0.01 each) and a card at bank B (points worth 0.005); bank C's
    programme is another cardholder's."""
    holder, other = make_cardholder(), make_cardholder()
    a = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    b = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    c = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    s.points_earn(cardholder_id=holder.pk, program=a, amount=1_000, idempotency_key="earn-a")
    make_card(cardholder=holder, bin_range=BinRangeFactory(product__bank=b.bank))
    s.points_earn(cardholder_id=other.pk, program=c, amount=1_000, idempotency_key="earn-c")
    return {"holder": holder, "other": other, "a": a, "b": b, "c": c}


def test_the_points_page_totals_every_bank_in_cny_exactly() -> None:
    holder = make_cardholder()
    a = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    b = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    s.points_earn(cardholder_id=holder.pk, program=a, amount=1_001, idempotency_key="a")
    s.points_earn(cardholder_id=holder.pk, program=b, amount=350, idempotency_key="b")
    s.points_redeem(cardholder_id=holder.pk, program=b, amount=1, idempotency_key="spend")
    response = signed_in(holder, language="en").get(reverse("rewards_portal:points"))
    # 1,001 × 0.005 = 5.005 and 349 × 0.01 = 3.49: 8.495, rounded once (half-even) to 8.50.
    assert response.context["total_cny"] == Decimal("8.50")
    page = response.content.decode()
    assert '<td id="points-total">¥8.50</td>' in page
    assert reverse("rewards_portal:exchange") in page


def test_the_total_is_rounded_once_not_row_by_row() -> None:
    holder = make_cardholder()
    for n in range(2):
        program = PointsProgramFactory(point_value_cny=Decimal("0.003"))
        s.points_earn(cardholder_id=holder.pk, program=program, amount=1, idempotency_key=f"p{n}")
    response = signed_in(holder, language="en").get(reverse("rewards_portal:points"))
    assert [row.value_cny for row in response.context["balances"]] == [Decimal("0.00"), Decimal("0.00")]
    assert response.context["total_cny"] == Decimal("0.01")  # 0.006, not 0.00 + 0.00


def test_the_exchange_page_shows_the_policy_in_force_and_only_own_programmes(wallet: dict[str, Any]) -> None:
    response = signed_in(wallet["holder"], language="en").get(reverse("rewards_portal:exchange"))
    assert response.status_code == 200
    choices = {program.pk for program in response.context["form"].fields["from_program"].queryset}
    assert choices == {wallet["a"].pk, wallet["b"].pk}
    page = response.content.decode()
    assert "2% of what the points are worth" in page
    assert "100 points" in page
    assert "2020-01-01 00:00" in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'name="idempotency_key"' in page
    assert "/static/rewards/exchange.js" in page


def test_the_quote_is_exact_and_for_own_programmes_only(wallet: dict[str, Any]) -> None:
    client = signed_in(wallet["holder"], language="en")
    url = reverse("rewards_portal:exchange_quote")
    a, b, c = wallet["a"], wallet["b"], wallet["c"]
    response = client.get(url, {"from_program": a.pk, "to_program": b.pk, "amount": "500"})
    assert response.status_code == 200
    # 0.01 × 0.98 / 0.005 = 1.96; 500 points are worth CNY 5, the fee is 2% of it, 980 points out.
    assert response.json() == {
        "amount": 500,
        "rate": "1.96",
        "points_out": 980,
        "fee_rate": "0.0200",
        "value_cny": "5.0000",
        "fee_cny": "0.1000",
        "result_value_cny": "4.9000",
        "to_unit": b.unit_code,
    }
    refused = client.get(url, {"from_program": a.pk, "to_program": c.pk, "amount": "500"})
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_request",
        "message": "Choose one of your programmes.",
        "param": "to_program",
    }
    for bad in ({"from_program": a.pk, "to_program": b.pk, "amount": "lots"}, {"from_program": a.pk}):
        response = client.get(url, bad)
        assert response.status_code == 400
        assert response.json()["error"]["message"]
    below = client.get(url, {"from_program": a.pk, "to_program": b.pk, "amount": "99"})
    assert below.status_code == 422
    assert below.json()["error"]["message"] == "The minimum exchange is 100 points."
    assert below.json()["error"]["param"] == "amount"
    assert not LedgerTransaction.objects.filter(kind="exchange").exists()
    # Signed out: to the sign-in page, no quote.
    assert Client().get(url, {"from_program": a.pk, "to_program": b.pk, "amount": "500"}).status_code == 302


def test_exchanging_on_the_page_moves_balances_exactly_and_once(wallet: dict[str, Any]) -> None:
    holder, a, b = wallet["holder"], wallet["a"], wallet["b"]
    client = signed_in(holder, language="en")
    page = client.get(reverse("rewards_portal:exchange"))
    key = page.context["form"].initial["idempotency_key"]
    form = {"from_program": a.pk, "to_program": b.pk, "amount": "500", "idempotency_key": str(key)}
    first = client.post(reverse("rewards_portal:exchange"), form)
    assert first.status_code == 302
    assert first["Location"] == reverse("rewards_portal:points")
    assert (posted(holder, a), posted(holder, b)) == (500, 980)
    again = client.post(reverse("rewards_portal:exchange"), form)  # the same page submitted twice
    assert again.status_code == 302
    assert (posted(holder, a), posted(holder, b)) == (500, 980)
    [exchange] = LedgerTransaction.objects.filter(kind="exchange")
    assert exchange.actor_label == holder.user.username
    # A fresh page is a fresh key: a second exchange.
    fresh = client.get(reverse("rewards_portal:exchange")).context["form"].initial["idempotency_key"]
    assert fresh != key
    client.post(reverse("rewards_portal:exchange"), {**form, "amount": "100", "idempotency_key": str(fresh)})
    assert (posted(holder, a), posted(holder, b)) == (400, 1_176)


def test_an_exchange_refused_shows_why_and_moves_nothing(wallet: dict[str, Any]) -> None:
    holder, a, b, c = wallet["holder"], wallet["a"], wallet["b"], wallet["c"]
    client = signed_in(holder, language="en")
    url = reverse("rewards_portal:exchange")
    attempts = [
        ({"from_program": a.pk, "to_program": c.pk, "amount": "500"}, "to_program", "Choose one of your programmes."),
        ({"from_program": c.pk, "to_program": a.pk, "amount": "500"}, "from_program", "Choose one of your programmes."),
        ({"from_program": a.pk, "to_program": b.pk, "amount": "5000"}, None, None),
        ({"from_program": a.pk, "to_program": b.pk, "amount": "99"}, "amount", "The minimum exchange is 100 points."),
        ({"from_program": a.pk, "to_program": b.pk, "amount": "500", "idempotency_key": "not-a-uuid"}, None, None),
    ]
    for fields, param, message in attempts:
        response = client.post(url, {"idempotency_key": "5f0c4a52-7f43-4a0e-9d55-0c9b9d3f3a11", **fields})
        assert response.status_code == 400, fields
        errors = response.context["form"].errors
        assert errors, fields
        if param is not None:
            assert errors[param] == [message]
    assert not LedgerTransaction.objects.filter(kind="exchange").exists()
    assert (posted(holder, a), posted(holder, b), posted(wallet["other"], c)) == (1_000, 0, 1_000)
