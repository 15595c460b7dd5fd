"""Shared benchmark plumbing: a fresh PostgreSQL database, Django set up against it, and timed worker processes.

Each benchmark creates its own database (named by the script) from DATABASE_URL's server, migrates it, seeds what it
needs through the services, and measures with worker *processes* (the GIL would otherwise measure Python, not the
system). Latencies are collected per operation; figures are reported side by side with their floor in one run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
# The project's packages come first: bench/payments.py must not shadow the payments app.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in (_BENCH, "")] + [_BENCH]


def setup_django(database: str) -> None:
    """Points Django at a fresh PostgreSQL database `database` on DATABASE_URL's server and migrates it."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    parsed = urlparse(url)
    if not parsed.scheme.startswith("postgres"):
        raise SystemExit("benchmarks run on PostgreSQL: set DATABASE_URL=postgres://...")
    import psycopg2

    admin = psycopg2.connect(urlunparse(parsed._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{database}"')
    admin.close()
    os.environ["DATABASE_URL"] = urlunparse(parsed._replace(path=f"/{database}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.dev")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def run_workers(
    workers: int, seconds: float, target: Callable[[int, Callable[[], float]], list[float]]
) -> tuple[int, list[float], float]:
    """Runs `target(worker_index, go)` in `workers` forked processes; each returns its latencies in seconds.

    A worker first loads what it needs (its rows, the cached routing configuration, its database connection), then
    calls `go()`, which waits until every worker is ready and returns the deadline: the window measures steady-state
    work, not process start-up. Returns (operations, latencies, elapsed seconds from the moment all are ready until
    the last finishes). Forking (not pickling) lets `target` be a closure.
    """
    from django.db import connections

    connections.close_all()
    context = mp.get_context("fork")
    queue = context.Queue()
    ready = context.Barrier(workers + 1)
    processes = [
        context.Process(target=_run_one, args=(target, index, seconds, ready, queue)) for index in range(workers)
    ]
    for process in processes:
        process.start()
    ready.wait(timeout=300)
    start = time.perf_counter()
    results = [queue.get() for _ in processes]
    elapsed = time.perf_counter() - start
    for process in processes:
        process.join()
    failures = [result for result in results if isinstance(result, str)]
    if failures:
        raise SystemExit("a worker failed:\n" + failures[0])
    latencies = [latency for result in results for latency in result]
    return len(latencies), latencies, elapsed


def _run_one(
    target: Callable[[int, Callable[[], float]], list[float]], index: int, seconds: float, ready: Any, queue: Any
) -> None:
    import traceback

    from django.db import connections

    connections.close_all()

    def go() -> float:
        ready.wait(timeout=300)
        return time.time() + seconds

    try:
        queue.put(target(index, go))
    except BaseException:
        ready.abort()
        queue.put(traceback.format_exc())
    finally:
        connections.close_all()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def ms(value: float) -> str:
    return f"{value * 1000:.2f}"


def describe(latencies: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "mean_ms": ms(statistics.fmean(latencies)) if latencies else "nan",
    }
