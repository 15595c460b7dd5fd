"""Running work on real parallel database connections."""

from __future__ import annotations

import threading
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
