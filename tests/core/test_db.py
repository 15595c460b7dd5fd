"""core.db.PreparedQuery: a queryset compiled once per process, each call returning what the queryset would."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db.models import Count
from django.db.models.sql.compiler import SQLCompiler

from core.db import PreparedQuery
from members.models import Card, Cardholder
from tests.factories import CardFactory

pytestmark = pytest.mark.django_db

CARDS = PreparedQuery(
    lambda card_id: Card.objects.select_related("cardholder", "product", "bank").filter(pk=card_id)[:1], -91
)


def test_it_returns_what_the_queryset_returns_with_the_related_rows_loaded(django_assert_num_queries: Any) -> None:
    card, other = CardFactory(), CardFactory()
    expected = Card.objects.select_related("cardholder", "product", "bank").get(pk=card.pk)
    CARDS.first(other.pk)  # on PostgreSQL the first call on a connection also prepares the statement
    with django_assert_num_queries(1):
        found = CARDS.first(card.pk)
        assert found is not None
        assert (found.pk, found.cardholder.display_name, found.product.name, found.bank.code) == (
            expected.pk,
            expected.cardholder.display_name,
            expected.product.name,
            expected.bank.code,
        )
    assert {f.attname: getattr(found, f.attname) for f in Card._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in Card._meta.concrete_fields
    }
    assert found._state.adding is False
    assert found._state.db == "default"
    assert CARDS.first(other.pk).pk == other.pk  # type: ignore[union-attr]
    assert CARDS.first(-1) is None
    assert CARDS.all(-1) == []


def test_it_compiles_once(monkeypatch: pytest.MonkeyPatch) -> None:
    card = CardFactory()
    query = PreparedQuery(lambda card_id: Card.objects.filter(pk=card_id), -92)
    compiled: list[int] = []
    original = SQLCompiler.as_sql

    def counting(self: SQLCompiler, *args: Any, **kwargs: Any) -> Any:
        compiled.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    for _ in range(3):
        assert [c.pk for c in query.all(card.pk)] == [card.pk]
    assert len(compiled) == 1
    # Each thread compiles its own, as each has its own connection (compiling touches no database).
    import threading

    other = threading.Thread(target=query._compile, args=("default",))
    other.start()
    other.join()
    assert len(compiled) == 2


def test_deferred_fields_and_annotations() -> None:
    card = CardFactory()
    CardFactory(cardholder=card.cardholder)
    only = PreparedQuery(lambda holder_id: Card.objects.filter(cardholder_id=holder_id).only("id").order_by("id"), -93)
    assert [c.get_deferred_fields() >= {"last4"} for c in only.all(card.cardholder_id)] == [True, True]
    counted = PreparedQuery(
        lambda holder_id: Cardholder.objects.filter(pk=holder_id).annotate(cards_held=Count("cards")), -94
    )
    [holder] = counted.all(card.cardholder_id)
    assert holder.cards_held == 2  # type: ignore[attr-defined]


def test_bad_sentinels_and_values_are_refused() -> None:
    with pytest.raises(TypeError):
        PreparedQuery(lambda moment: Card.objects.filter(created_at__gt=moment), dt.datetime(2000, 1, 1))
    twice = PreparedQuery(
        lambda card_id: Card.objects.filter(pk=card_id) | Card.objects.filter(cardholder_id=card_id), -95
    )
    with pytest.raises(ValueError, match="found 2 times"):
        twice.all(1)
    query = PreparedQuery(lambda card_id: Card.objects.filter(pk=card_id), -96)
    with pytest.raises(TypeError):
        query.all("1")
    with pytest.raises(TypeError):
        query.all(1, 2)


# --- prepared statements -------------------------------------------------------------------------------------------


def _run(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    from core.db import execute

    with connection.cursor() as cursor:
        execute(cursor, sql, params)
        return list(cursor.fetchall())


def _kinds(queries: Any) -> list[str]:
    """The statements' first words, without the savepoint a PREPARE takes inside a transaction (the test's own)."""
    kinds = [q["sql"].split()[0] for q in queries.captured_queries]
    return [kind for kind in kinds if kind not in ("SAVEPOINT", "RELEASE")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # it closes the connection: no test transaction around it
def test_a_statement_is_prepared_once_per_connection_then_executed(settings: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.db import prepared_sql

    sql = "SELECT %(a)s::int + %(b)s::int + %(a)s::int, '100%%'"
    with CaptureQueriesContext(connection) as first:
        assert _run(sql, {"a": 1, "b": 10}) == [(12, "100%")]
    assert _kinds(first) == ["PREPARE", "EXECUTE"]
    with CaptureQueriesContext(connection) as second:
        assert _run(sql, {"a": 2, "b": 20}) == [(24, "100%")]
    [executed] = [q["sql"] for q in second.captured_queries]
    assert executed.startswith("EXECUTE mengka_")
    assert prepared_sql(executed.split()[1].split("(")[0]) == sql
    assert _run("SELECT %s::text || %s::text", ["a", "b"]) == [("ab",)]
    connection.close()  # a new session has nothing prepared: the statement is prepared again
    with CaptureQueriesContext(connection) as third:
        assert _run(sql, {"a": 3, "b": 30}) == [(36, "100%")]
    assert _kinds(third) == ["PREPARE", "EXECUTE"]
    settings.DB_PREPARED_STATEMENTS = False
    with CaptureQueriesContext(connection) as plain:
        assert _run(sql, {"a": 4, "b": 40}) == [(48, "100%")]
    assert [q["sql"].split()[0] for q in plain.captured_queries] == ["SELECT"]


@pytest.mark.postgres
def test_a_statement_that_cannot_be_prepared_runs_as_it_is_and_leaves_the_transaction_usable() -> None:
    from django.db import transaction

    with transaction.atomic():
        # PostgreSQL cannot type a bare parameter in PREPARE; as a literal it is fine.
        assert _run("SELECT %s", ["hello"]) == [("hello",)]
        assert _run("SELECT %s::int", [7]) == [(7,)]  # the transaction was not aborted by the failed PREPARE
    assert _run("SELECT %s", ["again"]) == [("again",)]  # remembered: not tried again


def test_off_postgresql_a_statement_runs_as_it_is() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor == "postgresql":
        pytest.skip("checks the path of the other databases")
    with CaptureQueriesContext(connection) as queries:
        assert _run("SELECT %s + %s", [1, 2]) == [(3,)]
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]


# --- insert -------------------------------------------------------------------------------------------------------


def test_insert_writes_what_save_would_and_gives_each_row_its_key() -> None:
    from core.db import insert
    from core.models import IdempotencyRecord

    saved = IdempotencyRecord(scope="s", key="saved", operation="op", fingerprint="f")
    saved.save()
    rows = [IdempotencyRecord(scope="s", key=f"k{n}", operation="op", fingerprint="f") for n in range(3)]
    insert(rows)
    assert [row.pk for row in rows] == sorted(row.pk for row in rows)
    assert all(not row._state.adding and row._state.db == "default" for row in rows)
    fields = [
        f.attname for f in IdempotencyRecord._meta.concrete_fields if f.attname not in ("id", "key", "created_at")
    ]
    for row in rows:
        stored = IdempotencyRecord.objects.get(pk=row.pk)
        assert stored.key == row.key
        assert stored.created_at is not None  # auto_now_add, as save() sets it
        assert {f: getattr(stored, f) for f in fields} == {f: getattr(saved, f) for f in fields}
    with pytest.raises(ValueError, match="new object"):
        insert([saved])
    with pytest.raises(ValueError, match="one model"):
        insert([IdempotencyRecord(scope="s", key="x", operation="op", fingerprint="f"), CardFactory.build()])
    insert([])  # nothing to write


def test_insert_if_writes_the_row_only_when_the_guard_takes_something() -> None:
    from core.db import insert, insert_if
    from core.models import IdempotencyRecord

    table = IdempotencyRecord._meta.db_table
    token = IdempotencyRecord(scope="guard", key="token", operation="op", fingerprint="f", state="running")
    insert([token])
    guard = f"UPDATE {table} SET state = %s WHERE id = %s AND state = %s RETURNING id"
    first = IdempotencyRecord(scope="s", key="first", operation="op", fingerprint="f")
    assert insert_if(first, guard, ["done", token.pk, "running"]) is True
    assert first.pk is not None
    assert not first._state.adding
    assert IdempotencyRecord.objects.get(pk=first.pk).key == "first"
    assert IdempotencyRecord.objects.get(pk=token.pk).state == "done"  # taken by the same call
    second = IdempotencyRecord(scope="s", key="second", operation="op", fingerprint="f")
    assert insert_if(second, guard, ["done", token.pk, "running"]) is False  # already taken: nothing written
    assert second.pk is None
    assert second._state.adding
    assert not IdempotencyRecord.objects.filter(key="second").exists()
    # A guard returning several rows still writes one row.
    many = f"UPDATE {table} SET operation = %s WHERE scope = %s RETURNING id"
    assert insert_if(IdempotencyRecord(scope="t", key="one", operation="op", fingerprint="f"), many, ["x", "s"])
    assert IdempotencyRecord.objects.filter(scope="t").count() == 1
    with pytest.raises(ValueError, match="new object"):
        insert_if(first, guard, ["done", token.pk, "running"])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_insert_if_is_one_statement_on_postgresql() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.db import insert, insert_if
    from core.models import IdempotencyRecord

    token = IdempotencyRecord(scope="guard", key="token", operation="op", fingerprint="f", state="running")
    insert([token])
    guard = f"UPDATE {IdempotencyRecord._meta.db_table} SET state = %s WHERE id = %s AND state = %s RETURNING id"
    with CaptureQueriesContext(connection) as queries:
        assert insert_if(
            IdempotencyRecord(scope="s", key="k", operation="op", fingerprint="f"), guard, ["done", token.pk, "running"]
        )
    assert [q["sql"].split()[0] for q in queries.captured_queries if not q["sql"].startswith("PREPARE")] == ["EXECUTE"]


# --- a read carried by another statement ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # outside a transaction, as the merchant API writes
def test_a_carried_read_is_made_by_the_insert_and_handed_to_the_next_call_once(
    django_assert_num_queries: Any,
) -> None:
    from core.db import carried_reads, insert_carrying
    from core.models import JobRun

    card, other = CardFactory(), CardFactory()
    CARDS.first(other.pk)  # both statements prepared on this connection
    insert_carrying(JobRun(job="warm", period="", status="succeeded"), CARDS.carry(other.pk))
    with carried_reads():
        row = JobRun(job="carry", period="p1", status="succeeded")
        with django_assert_num_queries(1):
            insert_carrying(row, CARDS.carry(card.pk))
            found = CARDS.first(card.pk)  # no query: the insert read it
        assert row.pk is not None
        assert JobRun.objects.filter(pk=row.pk, job="carry").exists()
        assert found is not None
        assert (found.pk, found.cardholder.pk, found.bank.code) == (card.pk, card.cardholder.pk, card.bank.code)
        assert found._state.adding is False
        with django_assert_num_queries(1):
            assert CARDS.first(card.pk).pk == card.pk  # type: ignore[union-attr]  # used once: read again
        # A read that finds nothing is carried too: the call gets nothing without reading.
        with django_assert_num_queries(1):
            insert_carrying(JobRun(job="carry", period="p2", status="succeeded"), CARDS.carry(-1))
            assert CARDS.first(-1) is None
        # Other values are not what was carried: read as usual.
        insert_carrying(JobRun(job="carry", period="p3", status="succeeded"), CARDS.carry(card.pk))
        with django_assert_num_queries(1):
            assert CARDS.first(other.pk).pk == other.pk  # type: ignore[union-attr]
    # Outside `carried_reads` nothing is kept.
    insert_carrying(JobRun(job="carry", period="p4", status="succeeded"), CARDS.carry(card.pk))
    with django_assert_num_queries(1):
        assert CARDS.first(card.pk).pk == card.pk  # type: ignore[union-attr]
    assert JobRun.objects.filter(job="carry").count() == 4


def test_a_carried_read_in_a_transaction_or_off_postgresql_is_left_to_its_query(
    django_assert_num_queries: Any,
) -> None:
    """In a transaction (every test here) the row is written on its own and the read is not made for it."""
    from core.db import carried_reads, insert_carrying
    from core.models import JobRun

    card = CardFactory()
    insert_carrying(JobRun(job="carry", period="warm", status="succeeded"), CARDS.carry(card.pk))
    CARDS.first(card.pk)  # both statements prepared on this connection (PostgreSQL)
    with carried_reads():
        row = JobRun(job="carry", period="t", status="succeeded")
        with django_assert_num_queries(2):
            insert_carrying(row, CARDS.carry(card.pk))
            assert CARDS.first(card.pk).pk == card.pk  # type: ignore[union-attr]
    assert row.pk is not None
    with pytest.raises(TypeError):
        CARDS.carry("not an id")


# --- asynchronous commit --------------------------------------------------------------------------------------------


def _statement_text(sql: str) -> str:
    """The SQL a captured statement ran: a prepared statement's own text for an `EXECUTE name(…)`."""
    import re

    from core.db import prepared_sql

    executed = re.match(r"EXECUTE (mengka_\w+)", sql)
    return (prepared_sql(executed.group(1)) or "") if executed else sql


def _synchronous_commit() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the statement commits on its own, as the merchant API's key is taken
def test_an_async_commit_holds_for_its_own_statement_and_never_reaches_a_callers_transaction() -> None:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from core.db import commits_alone, insert, insert_carrying
    from core.models import IdempotencyRecord, JobRun

    card = CardFactory()
    assert commits_alone()
    for write in (
        lambda: insert([IdempotencyRecord(scope="a", key="one", operation="op", fingerprint="f")], async_commit=True),
        lambda: insert_carrying(
            JobRun(job="async", period="p", status="succeeded"), CARDS.carry(card.pk), async_commit=True
        ),
    ):
        with CaptureQueriesContext(connection) as queries:
            write()
        [statement] = [_statement_text(q["sql"]) for q in queries.captured_queries if "PREPARE" not in q["sql"]]
        assert "set_config('synchronous_commit', 'off', true)" in statement
        assert _synchronous_commit() == "on"  # gone with the statement's own transaction
    assert IdempotencyRecord.objects.filter(scope="a", key="one").exists()
    assert JobRun.objects.filter(job="async").exists()
    # Without the flag, and in a transaction with it, the statement waits for the flush as every commit does.
    with CaptureQueriesContext(connection) as queries:
        insert([IdempotencyRecord(scope="a", key="two", operation="op", fingerprint="f")])
        with transaction.atomic():
            assert not commits_alone()
            insert([IdempotencyRecord(scope="a", key="three", operation="op", fingerprint="f")], async_commit=True)
            job = JobRun(job="async", period="t", status="succeeded")
            insert_carrying(job, CARDS.carry(card.pk), async_commit=True)
            assert _synchronous_commit() == "on"  # the caller's commit is left as it was
    statements = [_statement_text(q["sql"]) for q in queries.captured_queries]
    assert not any("synchronous_commit" in statement for statement in statements if "SHOW" not in statement)
    assert IdempotencyRecord.objects.filter(scope="a", key__in=["two", "three"]).count() == 2


def test_off_postgresql_an_async_commit_changes_nothing() -> None:
    from django.db import connection

    from core.db import commits_alone, insert
    from core.models import IdempotencyRecord

    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL: see the test above")
    assert not commits_alone()
    row = IdempotencyRecord(scope="a", key="sqlite", operation="op", fingerprint="f")
    insert([row], async_commit=True)
    assert IdempotencyRecord.objects.get(pk=row.pk).key == "sqlite"
