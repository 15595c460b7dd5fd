"""The read-replica router: reports, statements, dashboards and exports read the replica when one is configured
(`DATABASE_REPLICA_URL`); writes, transactions and a user's requests just after their own write use the primary.

In the test run the replica mirrors the primary's test database through a second connection (CI sets
DATABASE_REPLICA_URL); elsewhere the tests that need it are skipped with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from core import replicas
from core.replicas import PIN_COOKIE, REPLICA, replica_reads
from members.models import MemberBank
from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory

needs_replica = pytest.mark.skipif(
    REPLICA not in settings.DATABASES, reason="needs a replica: set DATABASE_REPLICA_URL (CI does)"
)


def test_without_a_replica_everything_reads_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicas, "replica_configured", lambda: False)
    with replica_reads():
        assert router.db_for_read(MemberBank) == DEFAULT_DB_ALIAS
    assert router.db_for_write(MemberBank) == DEFAULT_DB_ALIAS


def test_the_replica_is_never_migrated_and_never_written() -> None:
    assert router.allow_migrate(REPLICA, "payments") is False
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "payments") is True
    with replica_reads():
        assert router.db_for_write(MemberBank) == DEFAULT_DB_ALIAS


@needs_replica
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
def test_reads_go_to_the_replica_only_when_asked_and_outside_a_transaction() -> None:
    assert MemberBank.objects.all().db == DEFAULT_DB_ALIAS
    with replica_reads():
        assert MemberBank.objects.all().db == REPLICA
        with transaction.atomic():
            assert MemberBank.objects.all().db == DEFAULT_DB_ALIAS  # sees the transaction's own writes
        assert MemberBank.objects.all().db == REPLICA
    assert MemberBank.objects.all().db == DEFAULT_DB_ALIAS


def _operator() -> Client:
    client = Client()
    assert client.login(username=AllianceOperatorFactory().username, password=PASSWORD)
    return client


def _queries(alias: str, client: Client, url: str, **extra: Any) -> tuple[list[str], Any]:
    with CaptureQueriesContext(connections[alias]) as captured:
        response = client.get(url, **extra)
        body = b"".join(response.streaming_content) if response.streaming else response.content
    return [query["sql"] for query in captured.captured_queries], (response, body)


@needs_replica
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
@pytest.mark.usefixtures("operator_groups_restored")
def test_the_dashboard_and_an_export_read_the_replica() -> None:
    """Committed rows (a transactional test): the replica connection sees what the primary's committed."""
    bank = FACTORIES["members.memberbank"]()
    client = _operator()

    on_replica, (response, _body) = _queries(REPLICA, client, "/admin/")
    assert response.status_code == 200
    assert any("payments_paymentintent" in sql for sql in on_replica)  # the dashboard's figures
    on_primary, _ = _queries(DEFAULT_DB_ALIAS, client, "/admin/")
    assert not any("payments_paymentintent" in sql for sql in on_primary)

    on_replica, (response, body) = _queries(REPLICA, client, "/admin/members/memberbank/export.csv")
    assert response.status_code == 200
    assert bank.code.encode() in body
    assert any("members_memberbank" in sql for sql in on_replica)  # the rows streamed from the replica
    on_primary, _ = _queries(DEFAULT_DB_ALIAS, client, "/admin/members/memberbank/export.csv")
    assert any("core_auditlog" in sql and sql.startswith("INSERT") for sql in on_primary)  # the audit, written
    assert not any(sql.startswith("SELECT") and "members_memberbank" in sql for sql in on_primary)


@needs_replica
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
@pytest.mark.usefixtures("operator_groups_restored")
def test_after_a_write_the_user_reads_the_primary_for_a_while() -> None:
    client = _operator()
    assert PIN_COOKIE not in client.get("/admin/").cookies  # reading never pins
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    assert response.status_code == 302
    assert response.cookies[PIN_COOKIE]["max-age"] == settings.REPLICA_PIN_SECONDS
    on_replica, (response, _body) = _queries(REPLICA, client, "/admin/")
    assert response.status_code == 200
    assert on_replica == []  # pinned: the dashboard read the primary
    on_primary, _ = _queries(DEFAULT_DB_ALIAS, client, "/admin/")
    assert any("payments_paymentintent" in sql for sql in on_primary)

    client.cookies.pop(PIN_COOKIE)  # the pin has expired
    on_replica, _ = _queries(REPLICA, client, "/admin/")
    assert any("payments_paymentintent" in sql for sql in on_replica)


@needs_replica
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
def test_the_cardholders_statement_reads_the_replica() -> None:
    from tests.portal_pages import portal_holder

    holder = portal_holder()
    client = Client()
    assert client.login(username=holder.username, password=PASSWORD)
    for url in ("/portal/pay/statement/", "/portal/pay/statement/export.csv", "/portal/pay/spending/"):
        on_replica, (response, _body) = _queries(REPLICA, client, url)
        assert response.status_code == 200, url
        assert any("payments_paymentintent" in sql for sql in on_replica), url


@needs_replica
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
def test_a_merchants_settlements_read_the_replica_after_the_key_is_checked_on_the_primary() -> None:
    from merchants.models import ApiKey
    from merchants.services import api_key_create
    from tests.factories import MerchantFactory, make_settlement

    merchant = MerchantFactory()
    batch = make_settlement(merchant, lines=[{"amount": 10_000, "fee": 6_025}, {"kind": "refund", "amount": -2_000}])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(merchant=merchant, mode='live').raw_key}")
    base = f"/api/v1/settlements/{batch.public_id}"
    for url in ("/api/v1/settlements", base, f"{base}/lines", f"{base}/lines.csv"):
        with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as on_primary:
            on_replica, (response, _body) = _queries(REPLICA, client, url)
        assert response.status_code == 200, url
        assert any("payments_settlement" in sql for sql in on_replica), url
        primary_sql = [query["sql"] for query in on_primary.captured_queries]
        assert any(ApiKey._meta.db_table in sql for sql in primary_sql), url  # the key: the primary's word
        assert not any("payments_settlement" in sql for sql in primary_sql), url


@needs_replica
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
def test_a_merchants_lists_read_the_replica_until_its_own_write_pins_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import uuid

    from django.core.cache import cache

    from merchants.services import api_key_create
    from tests.factories import MerchantFactory

    merchant, other = MerchantFactory(), MerchantFactory()

    def client(of: Any) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(merchant=of, mode='live').raw_key}")

    writer, reader, stranger = client(merchant), client(merchant), client(other)  # reader: the merchant's other key
    lists = {
        "/api/v1/payments": "payments_paymentintent",
        "/api/v1/refunds": "payments_refund",
        "/api/v1/events": "merchants_event",
        "/api/v1/disputes": "payments_dispute",
        "/api/v1/reports/summary": "payments_paymentintent",
        "/api/v1/segments/stats": "alliance_segmentrule",
    }

    def reads(who: Client, alias: str) -> dict[str, bool]:
        """For each list: whether it read its table on `alias` (and got a 200)."""
        found = {}
        for url, table in lists.items():
            sql, (response, _body) = _queries(alias, who, url)
            assert response.status_code == 200, (url, response.content)
            found[url] = any(table in statement for statement in sql)
        return found

    everywhere, nowhere = dict.fromkeys(lists, True), dict.fromkeys(lists, False)
    assert reads(reader, REPLICA) == everywhere
    assert reads(reader, DEFAULT_DB_ALIAS) == nowhere  # the key was checked there, the lists were not read there

    created = writer.post(
        "/api/v1/webhook-endpoints",
        json.dumps({"url": "https://shop.example.com/hooks"}),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert created.status_code == 201, created.content
    pin = replicas.PIN_CACHE_KEY.format(f"merchant:{merchant.pk}")
    assert cache.get(pin) is not None
    # Every key of the writing merchant now reads the primary; another merchant still reads the replica.
    assert reads(reader, REPLICA) == nowhere
    assert reads(reader, DEFAULT_DB_ALIAS) == everywhere
    assert reads(stranger, REPLICA) == everywhere

    cache.delete(pin)  # the pin has expired
    assert reads(reader, REPLICA) == everywhere
    # While Redis fails a pin written by another process cannot be seen: every key reads the primary.
    monkeypatch.setattr(replicas, "shared_cache_down", lambda: True)
    assert reads(stranger, REPLICA) == nowhere
