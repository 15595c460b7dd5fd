"""Merchants' events and webhook deliveries, partitioned by month (merchants/migrations/0020, docs/scaling.md,
"Partitioning by month"): rows land in their event's month, a delivery is still once per (event, endpoint) and
dated at its event, the due queue and the sending of one delivery read only the recent months, and the daily job
makes, fills and archives both tables' months.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from core.errors import NotFound
from core.ids import new_public_id, public_id_time
from core.partitions import PARTITIONED, partitions, partitions_create, partitions_maintain
from merchants import services
from merchants.models import Event, WebhookDelivery, WebhookEndpoint
from merchants.services import deliveries as delivery_services
from tests.factories import MerchantFactory
from tests.partitioning import at, explain, fetch

pytestmark = pytest.mark.django_db

TABLES = ("merchants_event", "merchants_webhookdelivery")


# Where the tests' deliveries go: a documentation address, its POST mocked.
TARGET = delivery_services.WebhookTarget(
    url="https://192.0.2.1/", address="192.0.2.1", host_header="x", tls_hostname=None
)


def _endpoint() -> WebhookEndpoint:
    return services.webhook_endpoint_create(
        merchant=MerchantFactory(), url="https://example.com/hooks", event_types=[]
    ).endpoint


def _emit_at(when: dt.datetime, endpoint: WebhookEndpoint, n: int = 1) -> list[Event]:
    with mock.patch("django.utils.timezone.now", return_value=when):
        return services.events_emit(
            merchant=endpoint.merchant, events=[("payment.succeeded", {"n": i}) for i in range(n)], livemode=True
        )


def _where(table: str, ids: list[int]) -> dict[int, str]:
    rows = fetch(f"SELECT id, tableoid::regclass::text FROM {table} WHERE id = ANY(%s)", (ids,))
    return dict(rows)


def _months(*months: tuple[int, int]) -> None:
    for table in TABLES:
        for year, month in months:
            partitions_create(table, dt.date(year, month, 1), 1)


def _read(captured: CaptureQueriesContext, start: str, table: str) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith(start) and f'"{table}"' in q["sql"]]


def _only(plan: str, kept: set[str], months: list[str]) -> None:
    """`plan` reads the partitions named in `kept` and none of the others of both tables (months and defaults)."""
    for table in TABLES:
        for name in [f"{table}_p{month}" for month in months] + [f"{table}_default"]:
            if name in kept:
                assert name in plan, f"{name} not read:\n{plan}"
            else:
                assert name not in plan, f"{name} read:\n{plan}"


def test_the_migration_made_both_tables_partitioned_with_keys_holding_the_month() -> None:
    assert PARTITIONED["merchants_event"] == "created_at"
    assert PARTITIONED["merchants_webhookdelivery"] == "event_created_at"
    # Deliveries first: a month of events is detached only once no delivery refers to it.
    order = list(PARTITIONED)
    assert order.index("merchants_webhookdelivery") < order.index("merchants_event")
    for table in TABLES:
        assert partitions(table)[-1].name == f"{table}_default"
    keys = dict(
        fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid IN ('merchants_event'::regclass, 'merchants_webhookdelivery'::regclass)"
            " AND contype IN ('p', 'u', 'f')"
        )
    )
    assert keys["merchants_event_pkey"] == "PRIMARY KEY (id, created_at)"
    assert keys["merchants_event_public_id_key"] == "UNIQUE (public_id, created_at)"
    assert keys["merchants_webhookdelivery_pkey"] == "PRIMARY KEY (id, event_created_at)"
    assert keys["delivery_once_per_endpoint"] == "UNIQUE (event_id, endpoint_id, event_created_at)"
    assert keys["merchants_webhookdelivery_event_fk"] == (
        "FOREIGN KEY (event_id, event_created_at) REFERENCES merchants_event(id, created_at)"
        " ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED"
    )


def test_events_and_their_deliveries_land_in_the_events_month() -> None:
    _months((2041, 1), (2041, 2))
    endpoint = _endpoint()
    # The last hour of January in Shanghai is still January, though it is the 31st's afternoon in UTC.
    january = _emit_at(at(2041, 1, 31, hour=23), endpoint)
    february = _emit_at(at(2041, 2, 1, hour=0), endpoint)
    later = _emit_at(at(2041, 7), endpoint)  # no month made: the DEFAULT partition holds it
    events = {"p204101": january[0], "p204102": february[0], "default": later[0]}
    for suffix, event in events.items():
        assert _where("merchants_event", [event.pk]) == {event.pk: f"merchants_event_{suffix}"}
        delivery = WebhookDelivery.objects.get(event=event)
        assert delivery.event_created_at == event.created_at
        assert _where("merchants_webhookdelivery", [delivery.pk]) == {
            delivery.pk: f"merchants_webhookdelivery_{suffix}"
        }
    # The ORM's cascade still deletes an event's deliveries; so does the database's composite key.
    january[0].delete()
    assert not WebhookDelivery.objects.filter(event_id=january[0].pk).exists()
    fetch("DELETE FROM merchants_event WHERE id = %s", (february[0].pk,))
    assert not WebhookDelivery.objects.filter(event_id=february[0].pk).exists()


def test_a_delivery_is_still_once_per_event_and_endpoint_and_dated_at_its_event() -> None:
    endpoint = _endpoint()
    (event,) = _emit_at(at(2041, 3), endpoint)
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(event=event, event_created_at=event.created_at, endpoint=endpoint)

    # Dated otherwise, the delivery names no event: the composite foreign key refuses it.
    def dated_otherwise() -> None:
        WebhookDelivery.objects.create(
            event=event, event_created_at=event.created_at + dt.timedelta(seconds=1), endpoint=endpoint
        )
        fetch("SET CONSTRAINTS ALL IMMEDIATE")

    with pytest.raises(IntegrityError), transaction.atomic():
        dated_otherwise()
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(event=event, endpoint=endpoint)  # without the time: NOT NULL
    assert WebhookDelivery.objects.filter(event=event).count() == 1


def test_the_due_queue_reads_only_the_months_its_window_reaches() -> None:
    months = ["204101", "204102", "204103", "204104"]
    _months((2041, 1), (2041, 2), (2041, 3), (2041, 4))
    endpoint = _endpoint()
    old = _emit_at(at(2041, 1), endpoint)[0]
    recent = _emit_at(at(2041, 3, 14), endpoint)[0]
    now = at(2041, 3, 15)
    WebhookDelivery.objects.update(next_attempt_at=now - dt.timedelta(minutes=1))  # both pending and due
    with mock.patch("django.utils.timezone.now", return_value=now), CaptureQueriesContext(connection) as captured:
        due = services.webhook_deliveries_due()
    # The January event's delivery is outside the window (its retries ended long ago), the March one is due.
    assert due == [(WebhookDelivery.objects.get(event=recent).pk, recent.created_at)]
    assert WebhookDelivery.objects.filter(event=old, status="pending").exists()
    (query,) = _read(captured, "SELECT", "merchants_webhookdelivery")
    _only(explain(query), {"merchants_webhookdelivery_p204103"}, months)
    # On a month's first day the window reaches back into the month before, and no further.
    first_day = at(2041, 3, 1, hour=9)
    with mock.patch("django.utils.timezone.now", return_value=first_day), CaptureQueriesContext(connection) as captured:
        services.webhook_deliveries_due()
    (query,) = _read(captured, "SELECT", "merchants_webhookdelivery")
    _only(explain(query), {"merchants_webhookdelivery_p204102", "merchants_webhookdelivery_p204103"}, months)


def test_the_window_is_the_longest_retry_span_and_a_day() -> None:
    attempts, span, window = delivery_services.MAX_ATTEMPTS, delivery_services.RETRY_SPAN, delivery_services.DUE_WINDOW
    assert attempts == len(delivery_services.RETRY_DELAYS) + 1
    assert span == dt.timedelta(hours=27, minutes=40)  # 27 h 36 min of back-off, and a lease for each of 8 attempts
    assert window == span + dt.timedelta(days=1)
    # A delivery failing every time is due for the last time within the window after its event.
    endpoint = _endpoint()
    start = at(2041, 5, 10)
    (event,) = _emit_at(start, endpoint)
    delivery = WebhookDelivery.objects.get(event=event)
    now = start
    with (
        mock.patch.object(delivery_services, "webhook_target", return_value=TARGET),
        mock.patch.object(delivery_services, "_webhook_post", side_effect=delivery_services.BlockedHost("down")),
    ):
        for _ in range(delivery_services.MAX_ATTEMPTS):
            with mock.patch("django.utils.timezone.now", return_value=now):
                assert [pk for pk, _ in services.webhook_deliveries_due()] == [delivery.pk]
                delivery = services.webhook_deliver(delivery_id=delivery.pk, event_created_at=event.created_at)
            if delivery.next_attempt_at is not None:
                now = delivery.next_attempt_at + delivery_services.LEASE
    assert delivery.status == "failed"
    assert now - start <= delivery_services.RETRY_SPAN


def test_sending_one_delivery_reads_and_writes_its_month_only() -> None:
    months = ["204105", "204106", "204107"]
    _months((2041, 5), (2041, 6), (2041, 7))
    endpoint = _endpoint()
    for month in (5, 7):
        _emit_at(at(2041, month), endpoint)
    (event,) = _emit_at(at(2041, 6), endpoint)
    delivery = WebhookDelivery.objects.get(event=event)
    response = mock.Mock(status_code=204)
    with (
        mock.patch.object(delivery_services, "webhook_target", return_value=TARGET),
        mock.patch.object(delivery_services, "_webhook_post", return_value=response),
        mock.patch("django.utils.timezone.now", return_value=at(2041, 6, 15, hour=13)),
        CaptureQueriesContext(connection) as captured,
    ):
        sent = services.webhook_deliver(delivery_id=delivery.pk, event_created_at=event.created_at)
    assert (sent.status, sent.attempts, sent.response_code) == ("succeeded", 1, 204)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    june = {"merchants_webhookdelivery_p204106", "merchants_event_p204106"}
    (select,) = _read(captured, "SELECT", "merchants_webhookdelivery")
    _only(explain(select), june, months)  # the delivery and its event, joined in their month
    claim, record = _read(captured, "UPDATE", "merchants_webhookdelivery")
    for update in (claim, record):
        _only(explain(update), {"merchants_webhookdelivery_p204106"}, months)

    # A resend, too, reads and writes its month (its task then sends it as above).
    with CaptureQueriesContext(connection) as captured:
        services.webhook_delivery_resend(delivery=delivery)
    assert delivery.status == "pending"
    for statement in _read(captured, "UPDATE", "merchants_webhookdelivery") + _read(
        captured, "SELECT", "merchants_webhookdelivery"
    ):
        _only(explain(statement), {"merchants_webhookdelivery_p204106"}, months)


def test_the_retry_job_sends_an_old_events_resend_until_it_succeeds() -> None:
    from merchants.tasks import webhooks_retry

    _months((2041, 1), (2041, 3))
    endpoint = _endpoint()
    (old,) = _emit_at(at(2041, 1), endpoint)
    (recent,) = _emit_at(at(2041, 3, 14), endpoint)
    WebhookDelivery.objects.update(status="failed", next_attempt_at=None, attempts=3)  # both gave up
    delivery = WebhookDelivery.objects.get(event=old)
    now = at(2041, 3, 15)
    # The operator resends January's delivery; its task never runs (the test's transaction never commits: as when
    # the broker refused it), so the retry job must send it, though the due queue does not read January.
    with mock.patch("django.utils.timezone.now", return_value=now):
        services.webhook_delivery_resend(delivery=delivery)
        assert services.webhook_deliveries_due() == []
        assert services.webhook_resends_due() == [(delivery.pk, old.created_at)]
    down, up = delivery_services.BlockedHost("down"), mock.Mock(status_code=204)
    with (
        mock.patch.object(delivery_services, "webhook_target", return_value=TARGET),
        mock.patch.object(delivery_services, "_webhook_post", side_effect=[down, up]) as post,
    ):
        with mock.patch("django.utils.timezone.now", return_value=now + dt.timedelta(minutes=1)):
            assert webhooks_retry() == 1  # sent, and failed: it waits for its next attempt
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("pending", 4)
        with mock.patch("django.utils.timezone.now", return_value=delivery.next_attempt_at - dt.timedelta(seconds=1)):
            assert webhooks_retry() == 0  # its back-off has not elapsed
        with mock.patch("django.utils.timezone.now", return_value=delivery.next_attempt_at):
            assert webhooks_retry() == 1
    assert post.call_count == 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 5, 204)
    assert WebhookDelivery.objects.get(event=recent).status == "failed"  # the other one was not touched


def test_an_event_by_its_timed_id_reads_its_month_only() -> None:
    from merchants.selectors import event_get

    months = ["204108", "204109", "204110"]
    _months((2041, 8), (2041, 9), (2041, 10))
    endpoint = _endpoint()
    for month in (8, 10):
        _emit_at(at(2041, month), endpoint)
    (event,) = _emit_at(at(2041, 9), endpoint)
    assert public_id_time(event.public_id, "evt") == event.created_at
    with CaptureQueriesContext(connection) as captured:
        assert event_get(merchant=endpoint.merchant, livemode=True, event_id=event.public_id) == event
    (query,) = _read(captured, "SELECT", "merchants_event")
    _only(explain(query), {"merchants_event_p204109"}, months)
    # A forged time finds nothing; an id made before ids carried the time is still found, reading every month.
    forged = new_public_id("evt", at=at(2041, 10))[:14] + event.public_id[14:]
    with pytest.raises(NotFound):
        event_get(merchant=endpoint.merchant, livemode=True, event_id=forged)
    Event.objects.filter(pk=event.pk).update(public_id="evt_" + "r" * 24)
    with CaptureQueriesContext(connection) as captured:
        assert event_get(merchant=endpoint.merchant, livemode=True, event_id="evt_" + "r" * 24) == event
    (query,) = _read(captured, "SELECT", "merchants_event")
    assert "merchants_event_p204108" in explain(query)
    assert "merchants_event_p204110" in explain(query)


def test_the_events_list_with_a_window_reads_its_months_and_without_one_every_month() -> None:
    from core.api.pagination import created_range
    from merchants.selectors import event_list

    _months((2041, 8), (2041, 9), (2041, 10))
    endpoint = _endpoint()
    for month in (8, 9, 10):
        _emit_at(at(2041, month), endpoint)
    events = event_list(merchant=endpoint.merchant, livemode=True)
    start = int(at(2041, 9, 1, hour=0).timestamp())
    end = int(at(2041, 9, 30, hour=23).timestamp())
    windowed = events.filter(**created_range({"created_gte": start, "created_lte": end}))
    assert [e.created_at for e in windowed] == [at(2041, 9)]
    plan = windowed.explain()
    assert "merchants_event_p204109" in plan
    for other in ("merchants_event_p204108", "merchants_event_p204110", "merchants_event_default"):
        assert other not in plan
    assert "merchants_event_p204108" in events.explain()  # no window: every month


def test_the_job_makes_fills_and_archives_both_tables_months() -> None:
    _months((2042, 1))
    endpoint = _endpoint()
    old = _emit_at(at(2042, 1), endpoint)[0]
    waiting = _emit_at(at(2042, 3), endpoint)[0]  # no month for March: both rows sit in the DEFAULT partitions
    delivery = WebhookDelivery.objects.get(event=waiting)
    assert _where("merchants_event", [waiting.pk]) == {waiting.pk: "merchants_event_default"}
    # January's delivery was given up on long ago (a delivery still retried keeps its month: `OPEN_ROWS`).
    WebhookDelivery.objects.filter(event=old).update(status=WebhookDelivery.Status.FAILED)

    # The job runs in a transaction of its own; here the rows were written in the test's, whose deferred foreign key
    # checks are made first (PostgreSQL alters no table with checks pending).
    fetch("SET CONSTRAINTS ALL IMMEDIATE")
    result = partitions_maintain(today=dt.date(2042, 5, 10), ahead=1, archive_after=3)

    for table in TABLES:
        assert {f"{table}_p204203", f"{table}_p204205", f"{table}_p204206"} <= set(result.created)
        assert f"{table}_p204204" not in result.created  # an empty month that is past
        assert f"{table}_archive_204201" in result.archived
    # March's rows moved out of the defaults, though deliveries refer to the events: the key is there again.
    assert _where("merchants_event", [waiting.pk]) == {waiting.pk: "merchants_event_p204203"}
    assert _where("merchants_webhookdelivery", [delivery.pk]) == {delivery.pk: "merchants_webhookdelivery_p204203"}
    assert fetch(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'merchants_webhookdelivery_event_fk' AND conparentid = 0"
    ) == [(1,)]
    # January went to the archive tables, deliveries and events alike.
    assert not Event.objects.filter(pk=old.pk).exists()
    assert fetch("SELECT event_id FROM merchants_webhookdelivery_archive_204201") == [(old.pk,)]
    assert fetch("SELECT id FROM merchants_event_archive_204201") == [(old.pk,)]
    again = partitions_maintain(today=dt.date(2042, 5, 10), ahead=1, archive_after=3)
    assert (again.created, again.archived) == ([], [])
