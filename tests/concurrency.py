"""Running work on real parallel database connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection


def run_parallel(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Runs `work(i)` in `n` threads released together; each result is its return value or the exception it raised.
    Every thread closes its own connection."""
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def runner(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class Background:
    """Runs `work()` in a thread on its own connection; `result()` waits for it and returns (or raises) its outcome.
    With `hold_open`, the work runs inside a transaction that stays open, its locks held, until `release()`."""

    def __init__(self, work: Callable[[], Any], *, hold_open: bool = False) -> None:
        self._work = work
        self._hold_open = hold_open
        self._done_work = threading.Event()
        self._release = threading.Event()
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        if hold_open:
            self._done_work.wait(timeout=60)
            if self._outcome:  # the work failed before the transaction could be held
                self.result()

    def _run(self) -> None:
        from django.db import transaction

        try:
            if self._hold_open:
                with transaction.atomic():
                    value = self._work()
                    self._done_work.set()
                    self._release.wait(timeout=60)
            else:
                value = self._work()
            self._outcome.append(("ok", value))
        except BaseException as exc:
            self._outcome.append(("error", exc))
        finally:
            self._done_work.set()
            connection.close()

    def release(self) -> None:
        self._release.set()

    def result(self) -> Any:
        self._release.set()
        self._thread.join(timeout=120)
        kind, value = self._outcome[0]
        if kind == "error":
            raise value
        return value


# Sessions of this database waiting for a lock. On Citus a session's row locks are taken on the workers, by backends
# working for it: citus_stat_activity shows every node's, each with its session's global pid.
SQL_LOCK_WAITERS = """
    SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
    AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""
SQL_CITUS_LOCK_WAITERS = """
    SELECT COUNT(DISTINCT global_pid) FROM citus_stat_activity WHERE datname = current_database()
    AND wait_event_type = 'Lock' AND global_pid <> citus_backend_gpid()
"""


def wait_for_lock_waiters(count: int = 1, timeout: float = 60.0) -> None:
    """Returns once `count` other sessions of this database wait for a lock (a row lock another connection holds);
    polls pg_stat_activity (on Citus, citus_stat_activity), so the interleaving a test forces does not depend on
    timing."""
    from django.conf import settings

    sql = SQL_CITUS_LOCK_WAITERS if settings.LEDGER_DISTRIBUTED else SQL_LOCK_WAITERS
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.01)
    raise AssertionError(f"no {count} session(s) waited for a lock within {timeout} s")
