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
    from core.idempotency import record_progress, resumed

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
    record_progress({"object": "x"})  # outside a keyed run: records nothing
    assert IdempotencyRecord.objects.get(key="k").response == outcome
    with pytest.raises(IdempotencyConflict):  # another request with the key is still refused
        run_idempotent(scope="s", key="k", operation="op", request={"a": 2}, execute=lambda: {})
