"""Payments on their way to monthly partitions (docs/scaling.md, "Partitioning by month"): a payment made by the
services has a timed public id of its own created_at, and a lookup by public id reads that millisecond only, while
an id made before (random, untimed) still resolves.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.errors import NotFound
from core.ids import MILLISECOND, public_id_time
from payments import services
from payments.api_support import payment_get
from payments.models import PaymentIntent
from payments.services.common import payment_load
from tests.factories import CardFactory, CardProductFactory, ChannelFactory, MemberBankFactory, MerchantFactory
from tests.partitioning import at

pytestmark = pytest.mark.django_db
_keys = itertools.count()


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank, code="acq-main")
    return {"card": card, "merchant": merchant}


def _pay(world: dict[str, Any], *, when: dt.datetime | None = None, **kwargs: Any) -> PaymentIntent:
    """A payment made by the service (captured at once), as if at `when`."""
    with mock.patch("django.utils.timezone.now", return_value=when or at(2026, 3, 10)):
        return services.payment_create(
            merchant=world["merchant"],
            cardholder=world["card"].cardholder,
            card=world["card"],
            amount=1_000,
            currency="CNY",
            idempotency_key=f"k{next(_keys)}",
            confirm=True,
            **kwargs,
        )


def test_a_payment_made_by_the_services_has_a_timed_id_of_its_created_at(world: dict[str, Any]) -> None:
    when = at(2026, 3, 10) + dt.timedelta(microseconds=123_456)
    payment = _pay(world, when=when)
    payment.refresh_from_db()
    assert payment.created_at == when
    made = public_id_time(payment.public_id, "pay")
    assert made is not None
    assert made <= payment.created_at < made + MILLISECOND


def test_a_lookup_by_public_id_reads_its_millisecond_and_old_ids_still_resolve(world: dict[str, Any]) -> None:
    payment = _pay(world)
    merchant = world["merchant"]
    with CaptureQueriesContext(connection) as queries:
        assert payment_get(merchant=merchant, livemode=True, payment_id=payment.public_id).pk == payment.pk
        assert payment_load(payment.public_id, merchant, True).pk == payment.pk  # the services' lookup
    assert all('"created_at" >=' in query["sql"] for query in queries.captured_queries)
    # Bounded to the id's millisecond: the same row dated otherwise is not what the id names.
    PaymentIntent.objects.filter(pk=payment.pk).update(created_at=payment.created_at + dt.timedelta(seconds=1))
    with pytest.raises(NotFound):
        payment_get(merchant=merchant, livemode=True, payment_id=payment.public_id)
    # An id made before payments had timed ids (24 random characters) holds no time and is found by itself.
    PaymentIntent.objects.filter(pk=payment.pk).update(public_id="pay_" + "x" * 24)
    assert payment_get(merchant=merchant, livemode=True, payment_id="pay_" + "x" * 24).pk == payment.pk
