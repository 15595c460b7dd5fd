"""The capture window and the refund window (payments/windows.py): a payment is confirmed or captured within
PAYMENT_CAPTURE_DAYS of its creation, refunded within REFUND_WINDOW_DAYS of its capture, and the sweep cancels what
was left open; the database holds a payment's business date to the window from its creation; and so settlement's
and reconciliation's reads by business date (or capture time) read only the months the windows allow."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import Conflict
from payments import services
from payments.models import PaymentAttempt, PaymentIntent, Refund, RoutingDecision
from payments.windows import CAPTURE_SPAN_DAYS

pytestmark = pytest.mark.django_db
_keys = itertools.count()
DAY = dt.timedelta(days=1)


def key() -> str:
    return f"window-{next(_keys)}"


@pytest.fixture
def recon_world(points_world: dict[str, Any]) -> dict[str, Any]:
    """The points world with its merchant's channel and a fee schedule, as reconciliation's tests have it."""
    from payments.fees import fee_schedule_create
    from payments.models import Channel

    fee_schedule_create(
        mdr_percent=Decimal("0.6"),
        issuer_share=Decimal("60"),
        acquirer_share=Decimal("25"),
        channel_share=Decimal("10"),
        alliance_share=Decimal("5"),
        effective_from=timezone.now() - DAY,
    )
    return {**points_world, "channel": Channel.objects.get(acquirer=points_world["merchant"].sponsor_bank)}


def _make(world: dict[str, Any], *, confirm: bool = True, capture: str = "automatic") -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=5_000,
        currency="CNY",
        capture_method=capture,
        idempotency_key=key(),
        confirm=confirm,
    )


def _made_ago(payment: PaymentIntent, age: dt.timedelta) -> PaymentIntent:
    """The payment as if made `age` ago (its rows follow its time, ON UPDATE CASCADE)."""
    PaymentIntent.objects.filter(pk=payment.pk).update(created_at=timezone.now() - age)
    return PaymentIntent.objects.get(pk=payment.pk)


# --- the capture window ----------------------------------------------------------------------------------------------


def test_a_payment_is_confirmed_within_the_window_and_refused_after_with_nothing_written(
    points_world: dict[str, Any],
) -> None:
    merchant = points_world["merchant"]
    late = _made_ago(_make(points_world, confirm=False), dt.timedelta(days=30, seconds=1))
    with pytest.raises(Conflict) as refused:
        services.payment_confirm(merchant=merchant, payment_id=late.public_id, idempotency_key=key())
    assert refused.value.code == "capture_window_closed"
    late.refresh_from_db()
    assert late.status == "requires_confirmation"
    assert not PaymentAttempt.objects.filter(intent=late).exists()
    assert not RoutingDecision.objects.filter(intent=late).exists()
    assert points_world["fake"].charge_count(late.public_id) == 0

    in_time = _made_ago(_make(points_world, confirm=False), dt.timedelta(days=29, hours=23))
    confirmed = services.payment_confirm(merchant=merchant, payment_id=in_time.public_id, idempotency_key=key())
    assert confirmed.status == "succeeded"


def test_an_authorisation_expires_by_the_end_of_the_window(recon_world: dict[str, Any]) -> None:
    channel = recon_world["channel"]
    channel.__class__.objects.filter(pk=channel.pk).update(authorization_hours=24 * 60)
    payment = _make(recon_world, capture="manual")
    assert payment.status == "requires_capture"
    assert payment.authorization_expires_at == payment.created_at + dt.timedelta(days=30)


def test_a_capture_after_the_window_is_refused_even_with_an_authorisation_left(points_world: dict[str, Any]) -> None:
    payment = _make(points_world, capture="manual")
    # Authorised before the expiry was held to the window: its authorisation outlives it.
    PaymentIntent.objects.filter(pk=payment.pk).update(authorization_expires_at=timezone.now() + DAY)
    payment = _made_ago(payment, dt.timedelta(days=30))
    with pytest.raises(Conflict) as refused:
        services.payment_capture(merchant=points_world["merchant"], payment_id=payment.public_id, idempotency_key=key())
    assert refused.value.code == "capture_window_closed"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.business_date) == ("requires_capture", 0, None)
    assert not [call for call in points_world["fake"].calls if call[0] == "capture"]


def test_the_sweep_cancels_what_was_left_open_past_the_window(points_world: dict[str, Any]) -> None:
    unconfirmed = _made_ago(_make(points_world, confirm=False), dt.timedelta(days=31))
    authorised = _make(points_world, capture="manual")
    PaymentIntent.objects.filter(pk=authorised.pk).update(authorization_expires_at=timezone.now() + DAY)
    authorised = _made_ago(authorised, dt.timedelta(days=31))
    fresh = _make(points_world, confirm=False)
    fresh_authorised = _make(points_world, capture="manual")

    assert services.authorizations_expire() == 2

    states = dict(PaymentIntent.objects.values_list("pk", "status"))
    reasons = dict(PaymentIntent.objects.values_list("pk", "cancellation_reason"))
    assert (states[unconfirmed.pk], reasons[unconfirmed.pk]) == ("canceled", "capture_window_closed")
    assert (states[authorised.pk], reasons[authorised.pk]) == ("canceled", "authorization_expired")
    assert (states[fresh.pk], states[fresh_authorised.pk]) == ("requires_confirmation", "requires_capture")
    assert services.authorizations_expire() == 0


# --- the refund window -----------------------------------------------------------------------------------------------


def _captured_ago(payment: PaymentIntent, age: dt.timedelta) -> PaymentIntent:
    PaymentIntent.objects.filter(pk=payment.pk).update(captured_at=timezone.now() - age)
    return PaymentIntent.objects.get(pk=payment.pk)


def test_a_refund_after_the_window_is_refused_with_nothing_written(points_world: dict[str, Any]) -> None:
    merchant = points_world["merchant"]
    late = _captured_ago(_make(points_world), dt.timedelta(days=180))
    with pytest.raises(Conflict) as refused:
        services.refund_create(merchant=merchant, payment_id=late.public_id, idempotency_key=key(), amount=100)
    assert refused.value.code == "refund_window_closed"
    late.refresh_from_db()
    assert (late.amount_refund_reserved, late.amount_refunded) == (0, 0)
    assert not Refund.objects.filter(intent=late).exists()
    assert not [call for call in points_world["fake"].calls if call[0] == "refund"]

    in_time = _captured_ago(_make(points_world), dt.timedelta(days=179, hours=23))
    done = services.refund_create(merchant=merchant, payment_id=in_time.public_id, idempotency_key=key(), amount=100)
    assert done.status == "succeeded"


def test_a_reconciliation_correction_keeps_the_refund_window_too(points_world: dict[str, Any]) -> None:
    from payments.services.refunds import refund_correction

    late = _captured_ago(_make(points_world), dt.timedelta(days=181))
    with pytest.raises(Conflict) as refused:
        refund_correction(late, 100, reason="statement")
    assert refused.value.code == "refund_window_closed"
    assert not Refund.objects.filter(intent=late).exists()


# --- the database's check --------------------------------------------------------------------------------------------


def _set_business_date(payment: PaymentIntent, day: dt.date) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_paymentintent SET business_date = %s WHERE id = %s AND created_at = %s",
            [day, payment.pk, payment.created_at],
        )


@pytest.mark.parametrize(("offset", "allowed"), [(-1, False), (0, True), (CAPTURE_SPAN_DAYS, True),
                                                 (CAPTURE_SPAN_DAYS + 1, False)])  # fmt: skip
def test_the_database_holds_the_business_date_to_the_window(
    points_world: dict[str, Any], offset: int, allowed: bool
) -> None:
    payment = _make(points_world)
    made = timezone.localtime(payment.created_at).date()
    if allowed:
        _set_business_date(payment, made + offset * DAY)
        assert PaymentIntent.objects.get(pk=payment.pk).business_date == made + offset * DAY
    else:
        with pytest.raises(IntegrityError, match="payment_business_date_in_capture_window"):
            _set_business_date(payment, made + offset * DAY)


def test_a_raw_insert_outside_the_window_is_refused(points_world: dict[str, Any]) -> None:
    payment = _make(points_world)
    with connection.cursor() as cursor:
        # A copy of the payment's row under another id, dated the day before it was made.
        cursor.execute(
            "CREATE TEMP TABLE window_copy AS SELECT * FROM payments_paymentintent WHERE id = %s", [payment.pk]
        )
        cursor.execute(
            "UPDATE window_copy SET id = id + 1000000, public_id = 'pay_window_check', payment_code_id = NULL,"
            " business_date = (created_at AT TIME ZONE 'Asia/Shanghai')::date - 1"
        )
        with pytest.raises(IntegrityError, match="payment_business_date_in_capture_window"), transaction.atomic():
            cursor.execute("INSERT INTO payments_paymentintent SELECT * FROM window_copy")
        cursor.execute("UPDATE window_copy SET business_date = business_date + 1")
        cursor.execute("INSERT INTO payments_paymentintent SELECT * FROM window_copy")
    assert PaymentIntent.objects.filter(public_id="pay_window_check").exists()


# --- the system check ------------------------------------------------------------------------------------------------


def test_a_window_longer_than_the_database_allows_is_an_error(settings: Any) -> None:
    settings.PAYMENT_CAPTURE_DAYS = 31
    assert [message.id for message in run_checks() if message.id == "payments.E001"] == ["payments.E001"]
    settings.PAYMENT_CAPTURE_DAYS, settings.REFUND_WINDOW_DAYS = 30, 181
    assert [message.id for message in run_checks() if message.id == "payments.E001"] == ["payments.E001"]
    settings.REFUND_WINDOW_DAYS = 90
    assert not [message for message in run_checks() if message.id == "payments.E001"]
