"""A payment held for risk review says so over the API, and the merchant hears when the review is decided."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from merchants.models import Event
from payments import services
from payments.models import PaymentIntent
from tests.api.conftest import World, agreement_body, idem, new_api
from tests.factories import AllianceOperatorFactory, make_risk_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(world: World) -> tuple[Any, dict[str, Any]]:
    """A live automatic-capture payment of ¥200 held by an amount rule (reviews above ¥100)."""
    make_risk_rule(name="big", kind="amount", threshold=10_000, action="review")
    api = new_api(world.merchant, mode="live")
    status, payment = api.post("payments", agreement_body(world.card, world.merchant, 20_000), key=idem())
    assert status == 201, payment
    return api, payment


def _review_events(payment_id: str) -> list[dict[str, Any]]:
    return [event.payload for event in Event.objects.filter(type="payment.review_closed", object_id=payment_id)]


def test_a_held_payment_says_why_it_waits(held: tuple[Any, dict[str, Any]]) -> None:
    api, payment = held
    assert payment["status"] == "requires_capture"
    assert payment["capture_method"] == "automatic"
    review = payment["review"]
    assert review["status"] == "open"
    assert review["reasons"] == ["amount_limit"]  # codes only: the messages are for operators
    assert review["deadline"] > int(timezone.now().timestamp())
    status, again = api.get(f"payments/{payment['id']}")
    assert status == 200
    assert again["review"] == review
    # The event of the hold carries the review too.
    held_event = Event.objects.get(type="payment.requires_capture", object_id=payment["id"])
    assert held_event.payload["review"]["status"] == "open"


def test_a_payment_never_held_has_no_review(world: World) -> None:
    api = new_api(world.merchant, mode="live")
    status, payment = api.post("payments", agreement_body(world.card, world.merchant, 500), key=idem())
    assert status == 201
    assert payment["review"] is None


def test_approval_closes_the_review_with_an_event(held: tuple[Any, dict[str, Any]]) -> None:
    api, payment = held
    assert _review_events(payment["id"]) == []
    services.risk_review_approve(payment_id=payment["id"], actor=AllianceOperatorFactory())
    _, now = api.get(f"payments/{payment['id']}")
    assert now["status"] == "succeeded"
    assert now["review"]["status"] == "approved"
    (closed,) = _review_events(payment["id"])
    assert closed["review"]["status"] == "approved"
    assert closed["status"] == "succeeded"


def test_rejection_closes_the_review_with_an_event(held: tuple[Any, dict[str, Any]]) -> None:
    api, payment = held
    services.risk_review_reject(payment_id=payment["id"], actor=AllianceOperatorFactory())
    _, now = api.get(f"payments/{payment['id']}")
    assert (now["status"], now["review"]["status"]) == ("canceled", "rejected")
    (closed,) = _review_events(payment["id"])
    assert closed["review"]["status"] == "rejected"


def test_an_undecided_review_expires_with_an_event(held: tuple[Any, dict[str, Any]]) -> None:
    api, payment = held
    PaymentIntent.objects.filter(public_id=payment["id"]).update(
        risk_review_deadline=timezone.now() - dt.timedelta(seconds=1)
    )
    assert services.risk_reviews_expire() == 1
    _, now = api.get(f"payments/{payment['id']}")
    assert (now["status"], now["review"]["status"]) == ("canceled", "expired")
    (closed,) = _review_events(payment["id"])
    assert closed["review"]["status"] == "expired"


def test_a_first_approval_of_two_leaves_the_review_open(held: tuple[Any, dict[str, Any]], settings: Any) -> None:
    settings.RISK_REVIEW_SECOND_APPROVAL_MINOR = 10_000
    api, payment = held
    services.risk_review_approve(payment_id=payment["id"], actor=AllianceOperatorFactory())
    _, now = api.get(f"payments/{payment['id']}")
    assert (now["status"], now["review"]["status"]) == ("requires_capture", "open")
    assert _review_events(payment["id"]) == []
