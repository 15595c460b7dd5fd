"""Idempotency keys: the first outcome of a call is stored and replayed; the same key with another request conflicts.

    outcome = run_idempotent(scope=f"merchant:{m.pk}", key=key, operation="payment.capture",
                             request={"payment": pid, "amount": 500}, execute=lambda: do_capture(...))

`execute` returns a JSON-safe dict (the outcome). A domain error (`MengkaError`) is an outcome too and is replayed as
the same error; any other exception frees the key so the caller may retry — unless the run had recorded progress
(`progress_statement`, written with the object it created, say the payment that is about to be charged): then the key
is left *interrupted*, and the next request with it resumes from that progress (`resumed()`) instead of starting
again, so a retry after an unexpected error never makes a second payment. Two concurrent calls with one key: one runs,
the other gets a 409 `Conflict` while the first is in progress.

Records are kept for `IDEMPOTENCY_RETENTION_HOURS` (48 by default, never under the 24 hours the merchant API promises)
and then pruned by the hourly `core.idempotency_prune` job: a key is a guard against retries, not a permanent record.
A call that needs a guarantee for ever keeps its own unique constraint (as the points ledger does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from .db import Carried, carried_reads, commits_alone, execute, insert, insert_carrying
from .errors import Conflict, IdempotencyConflict, MengkaError
from .models import IdempotencyRecord

_ERROR_MARK = "__mengka_error__"
STALE_AFTER = timedelta(minutes=5)
MIN_RETENTION = timedelta(hours=24)  # the merchant API promises to replay a key for at least this long
PRUNE_BATCH_SIZE = 1_000


def fingerprint(operation: str, request: Mapping[str, Any]) -> str:
    canonical = json.dumps({"op": operation, "req": request}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _error_outcome(exc: MengkaError) -> dict[str, Any]:
    return {_ERROR_MARK: {"class": type(exc).__name__, **exc.as_dict(), "status": exc.http_status}}


def _raise_stored(outcome: dict[str, Any]) -> None:
    stored = outcome[_ERROR_MARK]
    from . import errors

    error_class = getattr(errors, stored["class"], MengkaError)
    if not (isinstance(error_class, type) and issubclass(error_class, MengkaError)):
        error_class = MengkaError
    exc = error_class(stored["message"], code=stored["code"], param=stored["param"])
    exc.http_status = stored["status"]
    raise exc


# The key a caller already holds a record for (the merchant API's, around the service it calls with that key).
_held: ContextVar[str | None] = ContextVar("idempotency_key_held", default=None)


@dataclass(frozen=True)
class Rider:
    """Rows to write in the same statement as a keyed run's outcome: `ctes` (data-modifying, positional placeholders,
    `params` in their order), read back by `select` — two columns (a key, a flag), no placeholders — whose rows go to
    `on_rows` once written. `name`: what the CTEs are named after (one rider of a name at a time). `on_error`: asked
    when the statement fails; True when it has written its rows another way (the statement is then made again without
    it), False to let the failure stand."""

    ctes: str
    params: list[Any]
    select: str
    on_rows: Callable[[list[tuple[Any, ...]]], None]
    name: str = "rows"
    on_error: Callable[[DatabaseError], bool] | None = None


@dataclass
class _Run:
    record_id: int
    resumed: dict[str, Any] | None  # the progress an earlier, interrupted run of the key recorded
    late: bool = False  # the caller renders its outcome from its objects, so their writes may wait for it (`ride_late`)
    riders: list[Rider] = field(default_factory=list)


# The keyed run under way in this context.
_running: ContextVar[_Run | None] = ContextVar("idempotency_running", default=None)


def resumed() -> dict[str, Any] | None:
    """The progress an earlier run of the current key recorded before it stopped unexpectedly; None on a first run
    (and outside a keyed run). A service resumes from it instead of doing again what that run did."""
    running = _running.get()
    return running.resumed if running else None


def progress_statement(progress: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """The statement recording `progress` on the current key's record: the caller runs it in the transaction (or the
    statement) that writes what the progress names, so the two stand or fall together. None outside a keyed run."""
    running = _running.get()
    if running is None:
        return None
    sql = f"UPDATE {_TABLE} SET response = %s WHERE id = %s AND state = %s"  # noqa: S608
    return sql, [_prep("response", progress), running.record_id, IdempotencyRecord.State.IN_PROGRESS]


def record_progress(progress: dict[str, Any]) -> None:
    """Runs `progress_statement(progress)`, if in a keyed run: call it in the transaction that writes what it names."""
    statement = progress_statement(progress)
    if statement is not None:
        with connection.cursor() as cursor:
            execute(cursor, *statement)


def ride_with_outcome(rider: Rider) -> bool:
    """Lets `rider` be written by the statement that stores the current key's outcome (one round trip and one commit
    fewer). False — the caller writes it itself — outside a keyed run, inside a transaction (the rows belong to it),
    off PostgreSQL, or when a rider of its name is waiting. A run that stops on an unexpected error writes no outcome
    and no rider: what the rider carried must be written again by whoever resumes the key."""
    running = _running.get()
    if running is None or not commits_alone():
        return False
    if any(waiting.name == rider.name for waiting in running.riders):
        return False
    running.riders.append(rider)
    return True


def ride_late(rider: Rider) -> bool:
    """`ride_with_outcome` for a write the rest of the run takes as made — a state change its outcome reports: only
    in a run whose caller renders that outcome from its objects, not from the database (`run_idempotent(late=True)`).
    The write then stands or falls with the outcome and the rest: if it cannot be made (`Rider.on_error` did not
    make it another way), no outcome is stored as made."""
    running = _running.get()
    return bool(running and running.late) and ride_with_outcome(rider)


@contextmanager
def holding(key: str) -> Iterator[None]:
    """Marks `key` as held by the caller's own record while the block runs: a service called inside it with the same
    key runs at once, without a second record. The caller's record gives every guarantee the second would (one run
    per key, the first outcome replayed, a concurrent request refused, the same takeover after a crash)."""
    token = _held.set(key)
    try:
        yield
    finally:
        _held.reset(token)


def run_idempotent(
    *,
    scope: str,
    key: str,
    operation: str,
    request: Mapping[str, Any],
    execute: Callable[[], dict[str, Any]],
    read_along: Carried | None = None,
    late: bool = False,
) -> dict[str, Any]:
    """`read_along`: a read the run will make first (`PreparedQuery.carry`), made by the statement that takes the key
    (one round trip fewer); a key already taken makes no read. `late`: the caller renders the outcome from the objects
    `execute` hands back, never from the database, so writes may wait for the outcome's statement (`ride_late`)."""
    if not key or len(key) > 255:
        raise MengkaError("Idempotency-Key must be 1 to 255 characters.", code="invalid_idempotency_key")
    if _held.get() == key:
        return execute()
    with carried_reads() if read_along is not None else nullcontext():
        print_ = fingerprint(operation, request)
        try:
            # Outside a transaction the INSERT commits on its own; inside one, a savepoint keeps the caller's usable.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                record_id = _insert(scope, key, operation, print_, read_along)
        except IntegrityError:
            existing = IdempotencyRecord.objects.get(scope=scope, key=key)
            if existing.fingerprint != print_:
                raise IdempotencyConflict(
                    "This idempotency key was already used with a different request.", param="Idempotency-Key"
                ) from None
            if existing.state != IdempotencyRecord.State.DONE:
                # A holder that crashed never finishes: after a while its key may be taken over; one interrupted by an
                # error may be at once. The new run resumes from the progress the earlier one recorded (the rest is safe
                # to run again because every operation guards its own state transitions).
                stale_before = timezone.now() - STALE_AFTER
                taken = IdempotencyRecord.objects.filter(
                    Q(state=IdempotencyRecord.State.INTERRUPTED)
                    | Q(state=IdempotencyRecord.State.IN_PROGRESS, created_at__lt=stale_before),
                    pk=existing.pk,
                ).update(state=IdempotencyRecord.State.IN_PROGRESS, created_at=timezone.now())
                if not taken:
                    raise Conflict(
                        "A request with this idempotency key is still in progress.", code="idempotency_in_progress"
                    ) from None
                return _execute(existing.pk, execute, resumed=existing.response or None, late=late)
            outcome = existing.response or {}
            if _ERROR_MARK in outcome:
                _raise_stored(outcome)
            return outcome
        return _execute(record_id, execute, late=late)


def _execute(
    record_id: int, execute: Callable[[], dict[str, Any]], *, resumed: dict[str, Any] | None = None, late: bool = False
) -> dict[str, Any]:
    run = _Run(record_id, resumed, late)
    token = _running.set(run)
    try:
        outcome = execute()
    except MengkaError as exc:
        _finish(record_id, _error_outcome(exc), exc.http_status, run.riders)
        raise
    except BaseException:
        # Nothing recorded: the key is free again. Progress recorded: the next request resumes from it.
        running = IdempotencyRecord.objects.filter(pk=record_id, state=IdempotencyRecord.State.IN_PROGRESS)
        if not running.filter(response__isnull=True).delete()[0]:
            running.update(state=IdempotencyRecord.State.INTERRUPTED)
        raise
    finally:
        _running.reset(token)
    try:
        _finish(record_id, outcome, 200, run.riders)
    except MengkaError as exc:  # a write riding late could not be made: that refusal is the key's outcome
        _finish(record_id, _error_outcome(exc), exc.http_status)
        raise
    return outcome


# Every keyed call writes its record twice (taken, then done): plain statements, each value prepared by its field.
_TABLE = IdempotencyRecord._meta.db_table
_FIELDS = {field.name: field for field in IdempotencyRecord._meta.concrete_fields}


def _prep(name: str, value: Any) -> Any:
    return _FIELDS[name].get_db_prep_save(value, connection)


def _insert(scope: str, key: str, operation: str, print_: str, read_along: Carried | None = None) -> int:
    record = IdempotencyRecord(
        scope=scope, key=key, operation=operation, fingerprint=print_, state=IdempotencyRecord.State.IN_PROGRESS
    )
    # The key is taken without waiting for the disk (outside a transaction): what depends on it — the run's progress,
    # its outcome — is written by later commits of this connection, each of which flushes the log past the record. A
    # crash of the database that loses the record has lost nothing written after it: the key is free, as it would be
    # had the request never come.
    if read_along is None:
        insert([record], async_commit=True)
    else:
        insert_carrying(record, read_along, async_commit=True)
    return int(record.pk)


_DONE_SQL = f"UPDATE {_TABLE} SET state = %s, response = %s, status_code = %s, completed_at = %s WHERE id = %s"  # noqa: S608


def _finish(record_id: int, outcome: dict[str, Any], status_code: int, riders: Sequence[Rider] = ()) -> None:
    params = [
        IdempotencyRecord.State.DONE,
        _prep("response", outcome),
        status_code,
        _prep("completed_at", timezone.now()),
        record_id,
    ]
    waiting = list(riders)
    while waiting:
        # The riders' rows and the outcome in one statement: written together or not at all.
        ctes = ", ".join(rider.ctes for rider in waiting)
        select = " UNION ALL ".join(
            f"SELECT {index}, key, flag FROM ({rider.select}) AS rider{index} (key, flag)"  # noqa: S608
            for index, rider in enumerate(waiting)
        )
        try:
            with connection.cursor() as cursor:
                execute(
                    cursor,
                    f"WITH {ctes}, done AS ({_DONE_SQL}) {select}",
                    [*(value for rider in waiting for value in rider.params), *params],
                )
                rows = cursor.fetchall()
        except DatabaseError as exc:
            # Nothing was written. A rider that writes its rows another way is left out of the next try.
            recovered = next((r for r in waiting if r.on_error is not None and r.on_error(exc)), None)
            if recovered is None:
                raise
            waiting.remove(recovered)
            continue
        for index, rider in enumerate(waiting):
            rider.on_rows([row[1:] for row in rows if row[0] == index])
        return
    with connection.cursor() as cursor:
        execute(cursor, _DONE_SQL, params)


def idempotency_records_prune(
    *,
    older_than: timedelta,
    batch_size: int = PRUNE_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Deletes records created more than `older_than` ago, `batch_size` rows per DELETE (each its own short
    transaction), oldest first; calls `on_batch` with each batch's count. Returns how many went."""
    if older_than < MIN_RETENTION:
        hours = MIN_RETENTION // timedelta(hours=1)
        raise ValueError(f"Idempotency records are kept for at least {hours} hours: the API promises replay that long.")
    cutoff = timezone.now() - older_than
    expired = IdempotencyRecord.objects.filter(created_at__lt=cutoff)
    deleted = 0
    while True:
        batch = list(expired.order_by("created_at").values_list("pk", flat=True)[:batch_size])
        if not batch:
            return deleted
        # The cutoff again: a record taken over meanwhile (a stale in-progress key) has a fresh created_at.
        count, _by_model = expired.filter(pk__in=batch).delete()
        deleted += count
        if on_batch is not None:
            on_batch(count)
        if len(batch) < batch_size:
            return deleted
