"""Idempotency keys: the first outcome of a call is stored and replayed; the same key with another request conflicts.

    outcome = run_idempotent(scope=f"merchant:{m.pk}", key=key, operation="payment.capture",
                             request={"payment": pid, "amount": 500}, execute=lambda: do_capture(...))

A key's record holds four things: the key (unique per scope), the request's fingerprint, the run's progress and its
stored response. Each write of it is an ordinary synchronous commit.

`execute` returns a JSON-safe dict (the outcome). A domain error (`MengkaError`) is an outcome too and is replayed as
the same error; any other exception frees the key so the caller may retry — unless the run had recorded progress
(`record_progress`, called in the transaction that writes the object it names, say the payment about to be charged):
then the key is left *interrupted*, and the next request with it resumes from that progress (`resumed()`) instead of
starting again, so a retry after an unexpected error never makes a second payment. Two concurrent calls with one key:
one runs, the other gets a 409 `Conflict` while the first is in progress.

Records are kept for `IDEMPOTENCY_RETENTION_HOURS` (48 by default, never under the 24 hours the merchant API promises)
and then pruned by the hourly `core.idempotency_prune` job: a key is a guard against retries, not a permanent record.
A call that needs a guarantee for ever keeps its own unique constraint (as the points ledger does).

What is shown only once (a webhook endpoint's signing secret) is never stored in the clear: the caller names those
fields (`secret_fields`), and wherever one of them appears in the outcome its value is stored encrypted
(`core.crypto.encrypt`) and decrypted again for a replay. The record, its admin page and every backup hold only the
ciphertext; the replay still answers with the very value the first response gave.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import errors
from .crypto import decrypt, encrypt
from .errors import Conflict, IdempotencyConflict, MengkaError
from .models import IdempotencyRecord

_ERROR_MARK = "__mengka_error__"
_SEALED_MARK = "__mengka_sealed__"  # {"__mengka_sealed__": <ciphertext of the JSON value>} stands for a secret
STALE_AFTER = timedelta(minutes=5)
MIN_RETENTION = timedelta(hours=24)  # the merchant API promises to replay a key for at least this long
PRUNE_BATCH_SIZE = 1_000
State = IdempotencyRecord.State


def fingerprint(operation: str, request: Mapping[str, Any]) -> str:
    canonical = json.dumps({"op": operation, "req": request}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _error_outcome(exc: MengkaError) -> dict[str, Any]:
    return {_ERROR_MARK: {"class": type(exc).__name__, **exc.as_dict(), "status": exc.http_status}}


def _raise_stored(outcome: dict[str, Any]) -> None:
    stored = outcome[_ERROR_MARK]
    error_class = getattr(errors, stored["class"], MengkaError)
    if not (isinstance(error_class, type) and issubclass(error_class, MengkaError)):
        error_class = MengkaError
    exc = error_class(stored["message"], code=stored["code"], param=stored["param"])
    exc.http_status = stored["status"]
    exc.replayed = True
    raise exc


def seal(value: Any, secret_fields: Collection[str]) -> Any:
    """`value` with every item named in `secret_fields` (at any depth) replaced by its encrypted form."""
    if isinstance(value, Mapping):
        return {
            key: {_SEALED_MARK: encrypt(json.dumps(item))} if key in secret_fields else seal(item, secret_fields)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [seal(item, secret_fields) for item in value]
    return value


def unseal(value: Any, secret_fields: Collection[str]) -> Any:
    """The inverse of `seal`: every item named in `secret_fields` that was sealed decrypted back to its value. Only
    those names are looked at, so no stored request data (a merchant's metadata) can pass for a sealed item."""
    if isinstance(value, Mapping):
        return {
            key: _open(item) if key in secret_fields else unseal(item, secret_fields) for key, item in value.items()
        }
    if isinstance(value, list):
        return [unseal(item, secret_fields) for item in value]
    return value


def _open(item: Any) -> Any:
    if isinstance(item, Mapping) and set(item) == {_SEALED_MARK}:
        return json.loads(decrypt(item[_SEALED_MARK]))
    return item


@dataclass(frozen=True)
class _Run:
    record_id: int
    resumed: dict[str, Any] | None  # the progress an earlier, interrupted run of the key recorded


# The keyed run under way in this context, and the key a caller already holds a record for (the merchant API's,
# around the service it calls with that key).
_running: ContextVar[_Run | None] = ContextVar("idempotency_running", default=None)
_held: ContextVar[str | None] = ContextVar("idempotency_key_held", default=None)


def resumed() -> dict[str, Any] | None:
    """The progress an earlier run of the current key recorded before it stopped unexpectedly; None on a first run
    (and outside a keyed run). A service resumes from it instead of doing again what that run did."""
    running = _running.get()
    return running.resumed if running else None


def record_progress(progress: dict[str, Any]) -> None:
    """Records `progress` on the current key's record (nothing outside a keyed run). Call it in the transaction that
    writes what the progress names, so that the two stand or fall together."""
    running = _running.get()
    if running is not None:
        IdempotencyRecord.objects.filter(pk=running.record_id, state=State.IN_PROGRESS).update(response=progress)


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
    secret_fields: Collection[str] = (),
) -> dict[str, Any]:
    """Runs `execute` once per (scope, key) and returns its outcome; see the module's docstring. Items of the outcome
    named in `secret_fields` are stored encrypted (`seal`) and a replay decrypts them."""
    if not key or len(key) > 255:
        raise MengkaError("Idempotency-Key must be 1 to 255 characters.", code="invalid_idempotency_key")
    if _held.get() == key:
        return execute()
    print_ = fingerprint(operation, request)
    try:
        # On its own the INSERT commits at once (a taken key leaves nothing to roll back); inside a caller's
        # transaction a savepoint keeps that transaction usable when the key is taken already.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            record = IdempotencyRecord.objects.create(
                scope=scope, key=key, operation=operation, fingerprint=print_, state=State.IN_PROGRESS
            )
    except IntegrityError:
        return _replay_or_take_over(scope, key, print_, execute, secret_fields)
    return _execute(record.pk, execute, secret_fields)


def _replay_or_take_over(
    scope: str, key: str, print_: str, execute: Callable[[], dict[str, Any]], secret_fields: Collection[str]
) -> dict[str, Any]:
    existing = IdempotencyRecord.objects.get(scope=scope, key=key)
    if existing.fingerprint != print_:
        raise IdempotencyConflict(
            "This idempotency key was already used with a different request.", param="Idempotency-Key"
        )
    if existing.state == State.DONE:
        outcome: dict[str, Any] = unseal(existing.response or {}, secret_fields)
        if _ERROR_MARK in outcome:
            _raise_stored(outcome)
        return outcome
    # A holder that crashed never finishes: after a while its key may be taken over; one interrupted by an error may
    # be at once. The new run resumes from the progress the earlier one recorded (the rest is safe to run again
    # because every operation guards its own state transitions).
    taken = IdempotencyRecord.objects.filter(
        Q(state=State.INTERRUPTED) | Q(state=State.IN_PROGRESS, created_at__lt=timezone.now() - STALE_AFTER),
        pk=existing.pk,
    ).update(state=State.IN_PROGRESS, created_at=timezone.now())
    if not taken:
        raise Conflict("A request with this idempotency key is still in progress.", code="idempotency_in_progress")
    return _execute(existing.pk, execute, secret_fields, resumed=existing.response or None)


def _execute(
    record_id: int,
    execute: Callable[[], dict[str, Any]],
    secret_fields: Collection[str],
    *,
    resumed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    token = _running.set(_Run(record_id, resumed))
    try:
        outcome = execute()
    except MengkaError as exc:
        _finish(record_id, _error_outcome(exc), exc.http_status)
        raise
    except BaseException:
        # Nothing recorded: the key is free again. Progress recorded: the next request resumes from it.
        running = IdempotencyRecord.objects.filter(pk=record_id, state=State.IN_PROGRESS)
        if not running.filter(response__isnull=True).delete()[0]:
            running.update(state=State.INTERRUPTED)
        raise
    finally:
        _running.reset(token)
    _finish(record_id, seal(outcome, secret_fields), 200)
    return outcome


def _finish(record_id: int, outcome: dict[str, Any], status_code: int) -> None:
    IdempotencyRecord.objects.filter(pk=record_id).update(
        state=State.DONE, response=outcome, status_code=status_code, completed_at=timezone.now()
    )


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
