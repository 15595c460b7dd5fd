"""The hot path's SQL: compiled once per process, and on PostgreSQL parsed and planned once per connection.

`execute(cursor, sql, params)` runs a statement of ours through a server-side prepared statement on PostgreSQL: the
first time a connection sees a statement it is `PREPARE`d (named by a digest of its text), then each call is a short
`EXECUTE name(…)` — PostgreSQL skips parsing, analysing and (after a few calls, with a generic plan) planning, which
for a wide statement costs more than running it. `PREPARE` is not transactional (it survives a rollback); a statement
that cannot be prepared runs as it is. Elsewhere (SQLite, or `DB_PREPARED_STATEMENTS=false`, as behind a
transaction-pooling PgBouncer) the statement runs as it is.

Compiling a queryset costs Python time on every call: for a four-table `select_related` read of one row, about 1 ms,
several times what PostgreSQL needs to run it. `PreparedQuery` compiles a queryset once per database alias, with
sentinel values standing where the parameters go, and each call then runs that SQL with the real values and builds the
instances exactly as the queryset would: Django's own row converters, `Model.from_db` and related populators. What
comes back is what `queryset` would have returned; only the compiling is skipped.

Parameters are the values a lookup sends as they are (integers, strings, booleans): values the backend must adapt
first (dates and times on SQLite, say) are not accepted, so that the SQL and its parameters never disagree.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections, models, transaction
from django.db.models.query import get_related_populators

M = TypeVar("M", bound=models.Model)

_PLAIN = (int, str, bool)


class PreparedQuery(Generic[M]):
    """`build(*sentinels)` returns the queryset; `sentinels` are values of the parameters' types that appear nowhere
    else in it (each must come out exactly once among the compiled SQL's parameters)."""

    def __init__(self, build: Callable[..., models.QuerySet[M]], *sentinels: Any) -> None:
        for sentinel in sentinels:
            if type(sentinel) not in _PLAIN:
                raise TypeError(f"a prepared parameter is an int, a str or a bool, not {type(sentinel).__name__}")
        self._build = build
        self._sentinels = sentinels
        # Per thread, like Django's connections: a compiler keeps the connection it was compiled for.
        self._local = threading.local()

    def _compile(self, alias: str) -> tuple[Any, str, list[Any], list[int], _Reader]:
        compiled_by_alias: dict[str, tuple[Any, str, list[Any], list[int], _Reader]] | None = getattr(
            self._local, "compiled", None
        )
        if compiled_by_alias is None:
            compiled_by_alias = self._local.compiled = {}
        compiled = compiled_by_alias.get(alias)
        if compiled is not None:
            return compiled
        queryset = self._build(*self._sentinels)
        extras = (getattr(queryset, name) for name in ("_prefetch_related_lookups", "_known_related_objects"))
        if any(extras) or queryset.query.extra_select:
            raise ValueError("a prepared query has no prefetch, known related objects or extra select")
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        params = list(params)
        positions = []
        for sentinel in self._sentinels:
            found = [i for i, p in enumerate(params) if type(p) is type(sentinel) and p == sentinel]
            if len(found) != 1:
                raise ValueError(f"sentinel {sentinel!r} is found {len(found)} times in the compiled query")
            positions.append(found[0])
        compiled = compiled_by_alias[alias] = (compiler, sql, params, positions, _Reader.of(compiler, alias))
        return compiled

    def all(self, *values: Any, using: str = "default") -> list[M]:
        store = _carried.get()
        if store is not None:
            found = store.pop((self, values), None)
            if found is not None:
                return found
        compiler, sql, params, reader = self._bound(values, using)
        with connections[using].cursor() as cursor:
            execute(cursor, sql, params)
            rows = cursor.fetchall()
        return reader.read(compiler, rows, using) if rows else []

    def carry(self, *values: Any, using: str = "default") -> Carried:
        """This query's read with `values`, for another statement to make on its behalf (`insert_carrying`): the rows
        it returns are kept for this query's next call with the same values in the same context (`carried_reads`)."""
        _compiler, sql, params, _reader = self._bound(values, using)
        return Carried(self, values, sql, params, using)

    def _bound(self, values: tuple[Any, ...], using: str) -> tuple[Any, str, list[Any], _Reader]:
        if len(values) != len(self._sentinels):
            raise TypeError(f"expected {len(self._sentinels)} values, got {len(values)}")
        compiler, sql, template, positions, reader = self._compile(using)
        params = list(template)
        for position, sentinel, value in zip(positions, self._sentinels, values, strict=True):
            if type(value) is not type(sentinel):
                raise TypeError(f"expected {type(sentinel).__name__}, got {type(value).__name__}")
            params[position] = value
        return compiler, sql, params, reader

    def first(self, *values: Any, using: str = "default") -> M | None:
        """The first row (give the queryset its order and `[:1]`), or None."""
        found = self.all(*values, using=using)
        return found[0] if found else None


# Reads made by another statement on a prepared query's behalf, for its next call in this context (`carried_reads`).
_carried: ContextVar[dict[tuple[PreparedQuery[Any], tuple[Any, ...]], list[Any]] | None] = ContextVar(
    "mengka_carried_reads", default=None
)


@contextmanager
def carried_reads() -> Iterator[None]:
    """Within the block, the rows a statement read on behalf of a prepared query (`PreparedQuery.carry`) are handed
    to that query's next call with the same values, once; they are dropped when the block ends, used or not."""
    token = _carried.set({})
    try:
        yield
    finally:
        _carried.reset(token)


@dataclass(frozen=True)
class Carried:
    """A prepared query's read (`sql`, `params`), to be made by a statement of another purpose: one round trip fewer."""

    query: PreparedQuery[Any]
    values: tuple[Any, ...]
    sql: str
    params: list[Any]
    using: str

    def deliver(self, rows: list[tuple[Any, ...]]) -> None:
        """Keeps what the read returned for the query's next call with these values (outside `carried_reads`: not
        kept, and that call reads again)."""
        store = _carried.get()
        if store is not None:
            compiler, *_sql_params_positions, reader = self.query._compile(self.using)
            store[(self.query, self.values)] = reader.read(compiler, rows, self.using) if rows else []


@dataclass(frozen=True)
class _Reader:
    """How a compiled query's rows become instances, worked out once: what `QuerySet` redoes for every call (the
    model's columns, the row converters, a populator per `select_related` model — all fixed by the compiled query)."""

    model: type[models.Model]
    start: int
    end: int
    init_list: list[str]
    converters: dict[int, tuple[list[Any], Any]]
    populators: list[Any]
    annotations: list[tuple[str, int]]

    @classmethod
    def of(cls, compiler: Any, alias: str) -> _Reader:
        select, klass_info = compiler.select, compiler.klass_info
        fields = [column[0] for column in select[: compiler.col_count]]
        if compiler.has_composite_fields(fields):
            raise ValueError("a prepared query does not select composite fields")
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return cls(
            model=klass_info["model"],
            start=start,
            end=end,
            init_list=[column[0].target.attname for column in select[start:end]],
            converters=compiler.get_converters(fields),
            populators=get_related_populators(klass_info, select, alias),  # type: ignore[call-arg]  # Django 5.2
            annotations=list((compiler.annotation_col_map or {}).items()),
        )

    def read(self, compiler: Any, rows: list[tuple[Any, ...]], alias: str) -> list[Any]:
        """The instances, as `QuerySet` builds them (`SQLCompiler.apply_converters`, `Model.from_db`, populators)."""
        if self.converters:
            rows = list(compiler.apply_converters(rows, self.converters))
        objects = []
        start, end, init_list = self.start, self.end, self.init_list
        for row in rows:
            obj = self.model.from_db(alias, init_list, row[start:end])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            objects.append(obj)
        return objects


# --- server-side prepared statements (PostgreSQL) --------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")


@dataclass(frozen=True)
class _Statement:
    name: str
    text: str  # the statement with $1, $2 … for PREPARE
    names: tuple[str, ...] | None  # the parameters' names, for a statement with %(name)s placeholders
    count: int


_statements: dict[str, _Statement | None] = {}  # by SQL text; None: it cannot be prepared
_statements_lock = threading.Lock()


def _statement(sql: str) -> _Statement | None:
    try:
        return _statements[sql]
    except KeyError:
        pass
    names: list[str] = []
    positional = 0

    def number(match: re.Match[str]) -> str:
        nonlocal positional
        if match.group(0) == "%%":
            return "%"
        if match.group(1):
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"
        positional += 1
        return f"${positional}"

    text = _PLACEHOLDER.sub(number, sql)
    statement = None
    if not (names and positional):  # never both kinds in one statement
        digest = hashlib.sha256(sql.encode()).hexdigest()[:20]
        statement = _Statement(f"mengka_{digest}", text, tuple(names) if names else None, len(names) or positional)
    with _statements_lock:
        _statements[sql] = statement
    return statement


def _prepared_on(connection: Any) -> set[str]:
    """The statements prepared on this connection's current session (a new session starts with none)."""
    raw = connection.connection
    held = getattr(connection, "_mengka_prepared", None)
    if held is None or held[0] is not raw:
        held = (raw, set())
        connection._mengka_prepared = held
    prepared: set[str] = held[1]
    return prepared


def _prepare(cursor: Any, connection: Any, statement: _Statement) -> bool:
    """PREPAREs the statement on this session; in a transaction, inside a savepoint, so that a statement PostgreSQL
    cannot prepare leaves the transaction usable. Returns whether it is prepared."""
    savepoint = connection.savepoint() if connection.in_atomic_block else None
    try:
        cursor.execute(f"PREPARE {statement.name} AS {statement.text}")
    except DatabaseError:
        if savepoint is not None:
            connection.savepoint_rollback(savepoint)
        return False
    if savepoint is not None:
        connection.savepoint_commit(savepoint)
    return True


def prepared_sql(name: str) -> str | None:
    """The SQL a prepared statement's name stands for (for tests and debugging)."""
    return next((sql for sql, st in list(_statements.items()) if st is not None and st.name == name), None)


def execute(cursor: Any, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> None:
    """`cursor.execute(sql, params)`, through a prepared statement on PostgreSQL (see the module's docstring)."""
    connection = cursor.db
    if connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
        cursor.execute(sql, params)
        return
    statement = _statement(sql)
    if statement is None:
        cursor.execute(sql, params)
        return
    prepared = _prepared_on(connection)
    if statement.name not in prepared:
        if not _prepare(cursor, connection, statement):
            with _statements_lock:
                _statements[sql] = None
            cursor.execute(sql, params)
            return
        prepared.add(statement.name)
    if statement.names is not None:
        assert isinstance(params, Mapping)
        values = [params[name] for name in statement.names]
    else:
        values = list(params)  # type: ignore[arg-type]
    if len(values) != statement.count:
        raise TypeError(f"{statement.count} parameters expected, {len(values)} given")
    arguments = f"({', '.join(['%s'] * len(values))})" if values else ""
    cursor.execute(f"EXECUTE {statement.name}{arguments}", values)


# --- inserting new rows -----------------------------------------------------------------------------------------------


def commits_alone(using: str = "default") -> bool:
    """Whether a statement made now on `using` is a PostgreSQL statement that commits on its own (outside any
    transaction): the only place a read may ride with a write (`insert_carrying`) and a commit may skip the WAL flush
    (`async_commit` — inside a transaction the setting would reach the caller's whole transaction)."""
    connection = connections[using]
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _returning(pk: str, async_commit: bool) -> str:
    """An insert's RETURNING list: the key, and for an asynchronous commit the setting that makes it one — local to
    the statement's own transaction, so it holds for that commit and is gone after it."""
    return f"{pk}, set_config('synchronous_commit', 'off', true)" if async_commit else pk


def insert(objects: Sequence[models.Model], *, using: str = "default", async_commit: bool = False) -> None:
    """Writes new objects of one model in one `INSERT … RETURNING` (a prepared statement on PostgreSQL), every
    concrete field prepared as `save()` prepares it (defaults, `auto_now_add`), and gives each its primary key.

    For the hot path's rows, whose `save()` does nothing more: no model `save()` override and no signal is run.
    Rows come back in the order of VALUES, as Django's `bulk_create` relies on too.

    `async_commit`: where the statement commits on its own (`commits_alone`), it does not wait for its write to
    reach the disk — PostgreSQL's asynchronous commit, for this statement alone. Only for a row whose loss in a crash
    of the database loses nothing: a row that everything depending on it is written after, by a later (synchronous)
    commit of the same connection, which flushes the log up to and past it. Elsewhere the flag changes nothing."""
    if not objects:
        return
    model = type(objects[0])
    if any(type(obj) is not model for obj in objects):
        raise ValueError("insert() takes new objects of one model")
    for obj in objects:
        _require_new(obj)
    unflushed = async_commit and commits_alone(using)
    with connections[using].cursor() as cursor:
        values = [value for obj in objects for value in insert_values(obj, using=using)]
        execute(cursor, _insert_sql(model, len(objects), using, unflushed), values)
        keys = cursor.fetchall()
    for obj, (key, *_unflushed) in zip(objects, keys, strict=True):
        saved(obj, key, using=using)


def insert_carrying(obj: models.Model, carried: Carried, *, async_commit: bool = False) -> None:
    """Writes one new object as `insert()` does and, in the same statement, makes `carried`'s read (delivered to its
    query: `Carried.deliver`). PostgreSQL, outside a transaction: the read runs in the statement's snapshot, as it
    would have a moment later on its own. The object is written whether or not the read finds anything; if the write
    fails, so does the read. `async_commit` as for `insert()`."""
    _require_new(obj)
    if not commits_alone(carried.using):
        insert([obj], using=carried.using)
        return
    connection = connections[carried.using]
    table, columns, pk = _insert_target(type(obj), carried.using)
    placeholders, returning = ", ".join(["%s"] * len(columns)), _returning(pk, async_commit)
    # The read as a lateral subquery of the written row: exactly one row comes back, its marker NULL when the read found
    # nothing. Table and columns come from the model, the read from a compiled queryset; every value is a parameter.
    sql = (
        f"WITH written AS (INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) RETURNING {returning})"  # noqa: S608
        f" SELECT written.{pk}, carried.* FROM written LEFT JOIN LATERAL"
        f" (SELECT 1 AS mengka_found, read.* FROM ({carried.sql}) AS read) AS carried ON true"
    )
    with connection.cursor() as cursor:
        execute(cursor, sql, [*insert_values(obj, using=carried.using), *carried.params])
        rows = cursor.fetchall()
    saved(obj, rows[0][0], using=carried.using)
    carried.deliver([row[2:] for row in rows if row[1] is not None])


def new_row(obj: models.Model, *, using: str = "default") -> tuple[str, list[str], list[Any]]:
    """The quoted table, quoted columns and prepared values that `insert()` writes for a new object: for a statement
    that writes it together with other rows (a data-modifying CTE). `saved(obj, pk)` then marks it written."""
    _require_new(obj)
    table, columns = insert_columns(type(obj), using=using)
    return table, list(columns), insert_values(obj, using=using)


def insert_columns(model: type[models.Model], *, using: str = "default") -> tuple[str, tuple[str, ...]]:
    """The quoted table and columns `insert()` writes a new row of `model` with (the order of `insert_values()`)."""
    table, columns, _pk = _insert_target(model, using)
    return table, columns


def insert_values(obj: models.Model, *, using: str = "default") -> list[Any]:
    """A new object's values as `insert()` writes them, in the order of `new_row()`'s columns: every concrete field but
    the primary key, prepared as `save()` prepares it (defaults, `auto_now_add`)."""
    connection = connections[using]
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in _insert_fields(type(obj))]


def saved(obj: models.Model, pk: Any, *, using: str = "default") -> None:
    """Marks a new object as written with primary key `pk` (after a statement of `new_row()`'s)."""
    obj.pk = pk
    obj._state.adding, obj._state.db = False, using


def insert_if(obj: models.Model, guard: str, guard_params: Sequence[Any], *, using: str = "default") -> bool:
    """Writes one new object as `insert()` does, only if `guard` returns a row, atomically; returns whether it did.

    `guard` is a statement returning rows, typically a guarded `UPDATE … RETURNING` that takes something (a one-time
    code, say): the row is written if and only if the guard took it. On PostgreSQL this is one statement (the guard as
    a data-modifying CTE feeding `INSERT … SELECT`: one round trip, one commit); elsewhere the guard, then the insert,
    in one transaction."""
    _require_new(obj)
    connection = connections[using]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(guard, guard_params)
            if not cursor.fetchall():
                return False
            insert([obj], using=using)
        return True
    with connection.cursor() as cursor:
        execute(cursor, _insert_if_sql(type(obj), guard, using), [*guard_params, *insert_values(obj, using=using)])
        keys = cursor.fetchall()
    if not keys:
        return False
    saved(obj, keys[0][0], using=using)
    return True


def _require_new(obj: models.Model) -> None:
    if not obj._state.adding or obj.pk is not None:
        raise ValueError("a new object, without a primary key, is expected")


@functools.cache
def _insert_fields(model: type[models.Model]) -> list[Any]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


@functools.cache
def _insert_sql(model: type[models.Model], rows: int, using: str, async_commit: bool = False) -> str:
    """The statement inserting `rows` new rows of `model` (built once per shape)."""
    table, columns, pk = _insert_target(model, using)
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    returning = _returning(pk, async_commit)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)} RETURNING {returning}"  # noqa: S608


@functools.cache
def _insert_if_sql(model: type[models.Model], guard: str, using: str) -> str:
    """One new row of `model`, written only if `guard` returns a row. PostgreSQL types the SELECT's parameters by the
    INSERT's columns; a data-modifying CTE runs to completion even if it returns several rows, and the LIMIT keeps the
    insert to one row. Table and columns come from the model, the guard from the caller's code."""
    table, columns, pk = _insert_target(model, using)
    values = ", ".join(["%s"] * len(columns))
    return (
        f"WITH guard AS ({guard}) INSERT INTO {table} ({', '.join(columns)}) SELECT {values}"  # noqa: S608
        f" FROM (SELECT 1 FROM guard LIMIT 1) AS taken RETURNING {pk}"
    )


@functools.cache
def _insert_target(model: type[models.Model], using: str) -> tuple[str, tuple[str, ...], str]:
    """The quoted table, columns (those of `_insert_fields`) and primary key a new row of `model` is written with."""
    quote = connections[using].ops.quote_name
    meta = model._meta
    assert meta.pk is not None
    columns = tuple(quote(str(field.column)) for field in _insert_fields(model))
    return quote(meta.db_table), columns, quote(str(meta.pk.column))
