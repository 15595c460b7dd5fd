"""The capture window and the refund window (payments/windows.py): a payment is confirmed or captured within
PAYMENT_CAPTURE_DAYS of its creation, refunded within REFUND_WINDOW_DAYS of its capture, and the sweep cancels what
was left open; the database holds a payment's business date to the window from its creation; and so settlement's
and reconciliation's reads by business date (or capture time) read only the months the windows allow."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import Conflict
from core.partitions import partitions_create
from payments import services
from payments.models import PaymentAttempt, PaymentIntent, Refund, RoutingDecision
from payments.windows import CAPTURE_SPAN_DAYS, payments_created_for, refunds_created_for
from tests.partitioning import fetch
from tests.payments.settling import at, make_world, pay, refund
from tests.payments.test_reconciliation import load, our_rows

pytestmark = pytest.mark.django_db
_keys = itertools.count()
DAY = dt.timedelta(days=1)


def key() -> str:
    return f"window-{next(_keys)}"


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


# --- the reads name the months -----------------------------------------------------------------------------------


def test_the_ranges_reach_back_by_the_windows() -> None:
    first, last = dt.date(2024, 6, 10), dt.date(2024, 6, 12)
    assert payments_created_for(first, last) == (at(dt.date(2024, 4, 21), 0), at(dt.date(2024, 6, 13), 0))
    assert refunds_created_for(first, last) == (at(dt.date(2023, 10, 4), 0), at(dt.date(2024, 6, 13), 0))


def _months(first: dt.date, months: int) -> None:
    for table in ("payments_paymentintent", "payments_refund", "payments_paymentattempt"):
        partitions_create(table, first, months)


def _scanned(statement: str, condition: str) -> set[str]:
    """The partitions PostgreSQL's plan for `statement` scans with `condition` (a regular expression) among the
    scan's own conditions."""
    ((plan,),) = fetch("EXPLAIN (FORMAT JSON) " + statement, None)  # the statement is complete: no parameters
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> Iterator[None]:
        conditions = " ".join(str(node.get(name, "")) for name in ("Index Cond", "Filter", "Recheck Cond"))
        if "Relation Name" in node and re.search(condition, conditions):
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            yield from walk(child)
        yield None

    list(walk(plan[0]["Plan"]))
    return found


def _explainable(statement: str) -> str:
    """The SELECT of a statement that writes what it reads into a work table."""
    for prefix in ("INSERT INTO settle_items", "CREATE TEMP TABLE recon_ours ON COMMIT DROP AS"):
        if prefix in statement:
            return statement.split(prefix, 1)[1]
    return statement


def _months_of(found: set[str], table: str) -> set[str]:
    return {name.removeprefix(f"{table}_p") for name in found if name.startswith(f"{table}_p")}


def test_settlement_reads_the_months_its_business_dates_allow() -> None:
    _months(dt.date(2023, 6, 1), 18)  # June 2023 to November 2024
    world = make_world()
    wed = dt.date(2024, 6, 12)
    paid = pay(world, 10_000, wed)
    refund(paid, 1_000, wed)
    with CaptureQueriesContext(connection) as queries:
        services.settle("t1", wed.isoformat())
    reads = [
        _explainable(query["sql"])
        for query in queries.captured_queries
        if "business_date BETWEEN" in query["sql"] and "business_date >=" not in query["sql"]
    ]
    assert len(reads) >= 3  # the candidates, the chunk's payments and its refunds
    payments: set[str] = set()
    refunds: set[str] = set()
    for statement in reads:
        found = _scanned(statement, r"business_date >=")
        payments |= _months_of(found, "payments_paymentintent")
        refunds |= _months_of(found, "payments_refund")
    # Payments made from late April on, refunds of payments made from early October before (the capture and refund
    # windows, with their slack); nothing after the day.
    assert payments == {"202404", "202405", "202406"}
    assert refunds == {f"2023{m:02d}" for m in range(10, 13)} | {f"2024{m:02d}" for m in range(1, 7)}
    assert PaymentIntent.objects.get(pk=paid.pk).business_date == wed


def test_reconciliation_reads_the_months_its_day_allows(recon_world: dict[str, Any]) -> None:
    world = recon_world
    today = timezone.localdate()
    _months(today.replace(day=1) - dt.timedelta(days=400), 14)
    paid = _make(world)
    services.refund_create(merchant=world["merchant"], payment_id=paid.public_id, idempotency_key=key(), amount=1_000)
    with CaptureQueriesContext(connection) as queries:
        load(world, our_rows(world))
    (ours,) = [q["sql"] for q in queries.captured_queries if "CREATE TEMP TABLE recon_ours" in q["sql"]]
    statement = _explainable(ours)
    captures = _months_of(_scanned(statement, r"captured_at >="), "payments_paymentintent")
    refunds = _months_of(_scanned(statement, r"business_date = "), "payments_refund")
    this_month = today.strftime("%Y%m")
    assert this_month in captures
    assert this_month in refunds
    # The months before the windows are not read (the day's captures were made at most the capture window and its
    # slack before; its refunds' payments, the refund window's besides), nor those after the day.
    made_from = payments_created_for(today - 2 * DAY, today)[0].strftime("%Y%m")
    refunds_from = refunds_created_for(today - 2 * DAY, today)[0].strftime("%Y%m")
    assert min(captures) >= made_from
    assert max(captures) <= this_month
    assert min(refunds) >= refunds_from
    assert max(refunds) <= this_month
    made = _months_of({name for (name,) in fetch(_PARTITIONS)}, "payments_paymentintent")
    assert {month for month in made if month < made_from}  # there were older months to leave out


_PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'payments_paymentintent'::regclass"
)


def _capture_reads(calls: dict[str, Any]) -> dict[str, set[str]]:
    """For each reader: the months of payments the plans of its statements that read by capture time scan."""
    scanned: dict[str, set[str]] = {}
    for name, call in calls.items():
        with CaptureQueriesContext(connection) as queries:
            call()
        reads = [_explainable(q["sql"]) for q in queries.captured_queries if "captured_at" in q["sql"]]
        reads = [r.split("CREATE TEMPORARY TABLE segment_qualified ON COMMIT DROP AS", 1)[-1] for r in reads]
        assert reads, name
        scanned[name] = set().union(
            *(_months_of(_scanned(read, r"(captured|created)_at >="), "payments_paymentintent") for read in reads)
        )
    return scanned


def test_reads_by_capture_time_read_the_months_the_capture_window_allows(recon_world: dict[str, Any]) -> None:
    from alliance.selectors import segment_stats
    from alliance.services.segments import segments_compute
    from payments.api_support import merchant_summary
    from payments.promotion_stats import promotion_stats
    from payments.spending import spent_between
    from rewards.models import Promotion

    world = recon_world
    now = timezone.now()
    today = timezone.localdate()
    _months(today.replace(day=1) - dt.timedelta(days=800), 30)
    _make(world)
    merchant, cardholder = world["merchant"], world["card"].cardholder
    promotion = Promotion.objects.create(
        merchant=merchant,
        name="double points",
        kind=Promotion.Kind.POINTS_MULTIPLIER,
        multiplier=2,
        budget=10**6,
        starts_at=now - 10 * DAY,
        ends_at=now + 10 * DAY,
    )
    week_ago = now - 7 * DAY
    scanned = _capture_reads(
        {
            "merchant summary": lambda: merchant_summary(
                merchant=merchant, livemode=True, date_from=today - 7 * DAY, date_to=today, currency="CNY"
            ),
            "portal spending": lambda: list(spent_between(cardholder.pk, week_ago, now)),
            "promotion stats": lambda: promotion_stats(promotion=promotion, now=now),
            "segment stats": lambda: segment_stats(merchant=merchant, livemode=True, currency="CNY", days=7, now=now),
            "segments": lambda: segments_compute(now=now),
        }
    )
    this_month = today.strftime("%Y%m")
    # A week's captures (the promotion's, three weeks with its baseline) were made at most the capture window and its
    # slack before it; the segments' longest window reaches further, but not to the oldest months made.
    made_from = payments_created_for(today - 21 * DAY, today)[0].strftime("%Y%m")
    for name in ("merchant summary", "portal spending", "promotion stats", "segment stats"):
        assert this_month in scanned[name], name
        assert min(scanned[name]) >= made_from, (name, scanned[name])
        assert max(scanned[name]) <= this_month, (name, scanned[name])
    oldest = (today.replace(day=1) - dt.timedelta(days=800)).strftime("%Y%m")
    assert this_month in scanned["segments"]
    assert oldest not in scanned["segments"]
