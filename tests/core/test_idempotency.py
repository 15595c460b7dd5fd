from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from core.errors import Conflict, IdempotencyConflict, NotFound
from core.idempotency import run_idempotent
from core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


def test_replay_returns_the_first_outcome_without_running_again() -> None:
    calls: list[int] = []

    def execute() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert run_idempotent(scope="s", key="k", operation="op", request={"a": 1}, execute=execute) == {"n": 1}
    assert run_idempotent(scope="s", key="k", operation="op", request={"a": 1}, execute=execute) == {"n": 1}
    assert calls == [1]
    with pytest.raises(IdempotencyConflict):
        run_idempotent(scope="s", key="k", operation="op", request={"a": 2}, execute=execute)
    assert run_idempotent(scope="other", key="k", operation="op", request={"a": 2}, execute=execute) == {"n": 2}


def test_domain_errors_are_replayed_other_errors_free_the_key() -> None:
    def not_found() -> dict[str, int]:
        raise NotFound("gone", param="x")

    for _ in range(2):
        with pytest.raises(NotFound, match="gone") as error:
            run_idempotent(scope="s", key="e", operation="op", request={}, execute=not_found)
        assert error.value.param == "x"

    def crash() -> dict[str, int]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_idempotent(scope="s", key="c", operation="op", request={}, execute=crash)
    assert not IdempotencyRecord.objects.filter(key="c").exists()
    assert run_idempotent(scope="s", key="c", operation="op", request={}, execute=lambda: {"ok": 1}) == {"ok": 1}


def test_in_progress_conflicts_until_stale_then_is_taken_over() -> None:
    record = IdempotencyRecord.objects.create(scope="s", key="p", operation="op", fingerprint="x")
    from core.idempotency import fingerprint

    record.fingerprint = fingerprint("op", {})
    record.save()
    with pytest.raises(Conflict, match="in progress"):
        run_idempotent(scope="s", key="p", operation="op", request={}, execute=lambda: {"ok": 1})
    IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - dt.timedelta(minutes=6))
    assert run_idempotent(scope="s", key="p", operation="op", request={}, execute=lambda: {"ok": 2}) == {"ok": 2}


@pytest.mark.parametrize("bad", ["", "x" * 256])
def test_key_length_is_checked(bad: str) -> None:
    from core.errors import MengkaError

    with pytest.raises(MengkaError, match="1 to 255"):
        run_idempotent(scope="s", key=bad, operation="op", request={}, execute=lambda: {})


def test_progress_recorded_before_an_unexpected_error_is_resumed_by_the_next_call() -> None:
    from core.idempotency import progress_statement, record_progress, resumed

    seen: list[dict[str, object] | None] = []

    def create_then_fail() -> dict[str, object]:
        seen.append(resumed())
        record_progress({"object": "obj_1"})
        raise RuntimeError("lost the connection")

    with pytest.raises(RuntimeError):
        run_idempotent(scope="s", key="k", operation="op", request={"a": 1}, execute=create_then_fail)
    record = IdempotencyRecord.objects.get(key="k")
    assert (record.state, record.response) == ("interrupted", {"object": "obj_1"})
    outcome = run_idempotent(
        scope="s", key="k", operation="op", request={"a": 1}, execute=lambda: {"resumed": resumed()}
    )
    assert outcome == {"resumed": {"object": "obj_1"}}  # at once, not after the stale period
    assert seen == [None]  # the first run started afresh
    assert IdempotencyRecord.objects.get(key="k").state == "done"
    assert progress_statement({"object": "x"}) is None  # outside a keyed run
    with pytest.raises(IdempotencyConflict):  # another request with the key is still refused
        run_idempotent(scope="s", key="k", operation="op", request={"a": 2}, execute=lambda: {})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rider_is_written_by_the_statement_that_stores_the_outcome() -> None:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from core.db import prepared_sql
    from core.errors import Conflict
    from core.idempotency import Rider, ride_with_outcome
    from core.models import JobRun

    table = JobRun._meta.db_table
    written: list[list[tuple[object, ...]]] = []

    def rider(period: str) -> Rider:
        ctes = f"job AS (INSERT INTO {table} (job, period, status, counts, error, done, total, started_at, request_id)"
        ctes += " VALUES ('rider', %s, 'succeeded', '{}'::jsonb, '', 0, 0, now(), '') RETURNING id)"
        return Rider(ctes, [period], "SELECT id, false FROM job", written.append)

    def ride(period: str, then: BaseException | None = None) -> dict[str, object]:
        assert ride_with_outcome(rider(period))
        assert not ride_with_outcome(rider("second"))  # one rider of a name per run
        if then is not None:
            raise then
        return {"ok": True}

    with CaptureQueriesContext(connection) as queries:
        run_idempotent(scope="s", key="a", operation="op", request={}, execute=lambda: ride("a"))
    executed = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("PREPARE")]
    assert [sql.split()[0] for sql in executed] == [
        "EXECUTE",  # the record taken
        "EXECUTE",  # the rider and the outcome, one statement
    ]
    # The key is taken without waiting for the flush; the outcome, which the response waits on, is flushed.
    taken, done = (prepared_sql(sql.split()[1].split("(")[0]) or "" for sql in executed)
    assert "set_config('synchronous_commit', 'off', true)" in taken
    assert "synchronous_commit" not in done
    assert JobRun.objects.filter(job="rider", period="a").count() == 1
    assert len(written) == 1
    assert IdempotencyRecord.objects.get(key="a").state == "done"
    with pytest.raises(Conflict):  # a domain error is an outcome: the rider is written with it
        run_idempotent(scope="s", key="b", operation="op", request={}, execute=lambda: ride("b", Conflict("no")))
    assert JobRun.objects.filter(job="rider", period="b").exists()
    with pytest.raises(RuntimeError):  # no outcome, no rider
        run_idempotent(scope="s", key="c", operation="op", request={}, execute=lambda: ride("c", RuntimeError()))
    assert not JobRun.objects.filter(job="rider", period="c").exists()
    assert not ride_with_outcome(rider("outside"))  # outside a keyed run: the caller writes it itself

    def inside_a_transaction() -> dict[str, object]:
        with transaction.atomic():
            assert not ride_with_outcome(rider("atomic"))  # its rows belong to the transaction
        return {}

    run_idempotent(scope="s", key="d", operation="op", request={}, execute=inside_a_transaction)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_riders_of_two_names_ride_together_and_a_late_one_may_write_its_rows_another_way() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.idempotency import Rider, ride_late, ride_with_outcome
    from core.models import JobRun

    table = JobRun._meta.db_table
    written: dict[str, list[tuple[object, ...]]] = {}

    def rider(name: str, period: str, *, fails: bool = False, on_error: object = None) -> Rider:
        ctes = f"{name} AS (INSERT INTO {table} (job, period, status, counts, error, done, total, started_at, "
        ctes += "request_id) VALUES ('rider', %s, 'succeeded', '{}'::jsonb, '', 0, 0, now(), '') RETURNING id)"
        select = f"SELECT id, mengka_require({'false' if fails else 'true'}, 'refused') FROM {name}"
        return Rider(ctes, [period], select, written.setdefault(name, []).extend, name=name, on_error=on_error)  # type: ignore[arg-type]

    def two() -> dict[str, object]:
        assert not ride_late(rider("first", "early"))  # only in a run whose caller asked for late writes
        assert ride_with_outcome(rider("first", "a"))
        assert ride_with_outcome(rider("second", "b"))
        return {"ok": True}

    with CaptureQueriesContext(connection) as queries:
        run_idempotent(scope="s", key="two", operation="op", request={}, execute=two)
    assert len([q for q in queries.captured_queries if q["sql"].startswith("EXECUTE")]) == 2  # taken; all the rest
    assert sorted(JobRun.objects.filter(job="rider").values_list("period", flat=True)) == ["a", "b"]
    assert [len(written["first"]), len(written["second"])] == [1, 1]

    # A late rider whose statement fails writes its rows its own way; the others and the outcome follow.
    errors: list[str] = []

    def another_way(exc: Exception) -> bool:
        errors.append(str(exc).splitlines()[0])
        JobRun.objects.create(job="rider", period="another way", status="succeeded")
        return True

    def late() -> dict[str, object]:
        assert ride_late(rider("capture", "c", fails=True, on_error=another_way))
        assert ride_with_outcome(rider("events", "d"))
        return {"ok": True}

    assert run_idempotent(scope="s", key="late", operation="op", request={}, execute=late, late=True) == {"ok": True}
    assert errors == ["refused"]
    assert sorted(JobRun.objects.filter(job="rider").values_list("period", flat=True)) == [
        "a",
        "another way",
        "b",
        "d",
    ]
    assert IdempotencyRecord.objects.get(key="late").state == "done"

    # One that cannot: the failure stands, nothing of the statement is written, the key is not done.
    def refuses() -> dict[str, object]:
        assert ride_late(rider("capture", "e", fails=True, on_error=lambda exc: False))
        return {"ok": True}

    with pytest.raises(Exception, match="refused"):
        run_idempotent(scope="s", key="refused", operation="op", request={}, execute=refuses, late=True)
    assert not JobRun.objects.filter(period="e").exists()
    assert IdempotencyRecord.objects.get(key="refused").state != "done"

    # One that refuses with a domain error: that error is the key's outcome, replayed.
    def conflict(exc: Exception) -> bool:
        raise Conflict("moved elsewhere", code="moved")

    def conflicts() -> dict[str, object]:
        assert ride_late(rider("capture", "f", fails=True, on_error=conflict))
        assert ride_with_outcome(rider("events", "g"))
        return {"ok": True}

    for _ in range(2):
        with pytest.raises(Conflict, match="moved elsewhere"):
            run_idempotent(scope="s", key="conflict", operation="op", request={}, execute=conflicts, late=True)
    assert not JobRun.objects.filter(period__in=["f", "g"]).exists()
