"""Shared benchmark plumbing: the run's own PostgreSQL database and Redis db, Django set up against them, and timed
worker processes.

Each benchmark run creates a database of its own, `mengka_bench_<name>_<pid>_<random>`, on the PostgreSQL server of
DATABASE_URL (default postgres://postgres@127.0.0.1:5432; the database named in the URL is not used), migrates it,
seeds what it needs through the services, and drops it when the run ends, however it ends (normal exit, failure,
Ctrl-C, SIGTERM or SIGHUP): only SIGKILL leaves it behind. `--database NAME` (or BENCH_DATABASE) runs in an existing,
empty database instead, used as-is: never created, emptied or dropped. `--keep` keeps what the run created and says
where it is.

Redis (`--redis URL`, or REDIS_URL; `--redis none` for none): the run claims an empty numbered db of its own on that
server (the URL's db if it is empty, else the highest empty one; never db 0), marks it with the key
`mengka_bench:claim`, points Django, Celery, the risk counters and the breakers at it, and flushes that db — only that
one, and only while it still holds this run's mark — when the run ends. Without Redis the run uses the local-memory
cache, in-process counters and breakers, and runs tasks inline. Each BENCH line ends with `redis=<url>` or
`redis=none`.

Measurement uses worker *processes* (the GIL would otherwise measure Python, not the system). Latencies are collected
per operation; figures are reported side by side with their floor in one run.
"""

from __future__ import annotations

import argparse
import atexit
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
# The project's packages come first: bench/payments.py must not shadow the payments app.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in (_BENCH, "")] + [_BENCH]

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "mengka_bench_"
REDIS_CLAIM_KEY = "mengka_bench:claim"
# Tables the benchmarks seed or count: a database given with --database must have none of their rows.
PROJECT_TABLES = ("members_memberbank", "rewards_entry", "payments_paymentintent", "merchants_merchant")
_RELEASE_REDIS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('FLUSHDB') return 1 end
return 0
"""


def add_arguments(parser: argparse.ArgumentParser, *, redis: bool = True) -> None:
    """The options every benchmark on our database takes: --database, --keep and (unless it never uses Redis)
    --redis."""
    group = parser.add_argument_group("database and Redis")
    group.add_argument(
        "--database",
        metavar="NAME",
        default=os.environ.get("BENCH_DATABASE") or None,
        help="run in this existing, empty database on DATABASE_URL's server, as-is: never created, emptied or dropped"
        " (default: BENCH_DATABASE, else a database of the run's own, dropped when it ends)",
    )
    group.add_argument(
        "--keep", action="store_true", help="keep the database and the Redis db the run created, and say which"
    )
    if redis:
        group.add_argument(
            "--redis",
            metavar="URL",
            default=os.environ.get("REDIS_URL") or None,
            help="Redis server to claim a db of the run's own on, or 'none' (default: REDIS_URL, else none)",
        )


@dataclass
class Run:
    """What one benchmark run uses: its database (created or given), its Redis db (claimed, or none)."""

    name: str
    suffix: str
    server: str
    database: str = ""
    database_url: str = ""
    redis_url: str = ""
    keep: bool = False
    created: list[str] = field(default_factory=list)
    redis_token: str = ""
    pid: int = field(default_factory=os.getpid)

    @property
    def redis(self) -> str:
        """`redis=` of the BENCH line: the URL of the db the run measured with (password hidden), or none."""
        return _masked(self.redis_url) if self.redis_url else "none"

    def create_database(self, label: str) -> str:
        """Creates another database of this run's own (dropped with the first); returns its name."""
        name = f"{DATABASE_PREFIX}{label}_{self.suffix}"
        _admin(self.server, f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def url_of(self, database: str) -> str:
        return urlunparse(urlparse(self.server)._replace(path=f"/{database}"))

    def cleanup(self) -> None:
        """Drops the databases the run created and flushes the Redis db it claimed, unless --keep. Runs once, in the
        process that started the run (forked workers inherit the registration, not the ownership)."""
        if os.getpid() != self.pid:
            return
        self.pid = -1
        if _main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave the cleanup half done
        _close_django_connections()
        if self.keep:
            for name in self.created:
                print(f"bench: kept database {name} (drop it with: DROP DATABASE {name})", file=sys.stderr)
            if self.redis_token:
                print(f"bench: kept Redis db {self.redis} (free it later: FLUSHDB on that db)", file=sys.stderr)
            return
        for name in reversed(self.created):
            try:
                # FORCE: only ever on a database this run created, under a name no other run uses.
                _admin(self.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"bench: could not drop database {name}: {exc}", file=sys.stderr)
        if self.redis_token:
            try:
                import redis

                client = redis.Redis.from_url(self.redis_url, socket_timeout=10)
                if not client.eval(_RELEASE_REDIS, 1, REDIS_CLAIM_KEY, self.redis_token):
                    print(f"bench: {self.redis} no longer holds this run's mark: not flushed", file=sys.stderr)
            except Exception as exc:
                print(f"bench: could not flush Redis db {_masked(self.redis_url)}: {exc}", file=sys.stderr)


def setup(
    name: str,
    args: argparse.Namespace,
    *,
    redis: str = "optional",
    settings_module: str | None = None,
    fresh_tables: Iterable[str] = PROJECT_TABLES,
    reuse: bool = False,
) -> Run:
    """Opens a run: its database (created, or --database), its Redis db (`redis`: "optional" — claimed when --redis or
    REDIS_URL names a server; "required" — exits saying so when none does; "never"), the cleanup at exit, then Django
    (`settings_module`, default DJANGO_SETTINGS_MODULE or settings.dev) set up against them and migrated. With
    `reuse`, a --database that an earlier run seeded (and kept) is taken with its rows."""
    exit_on_signals()
    server = _server_url()
    run = Run(name=name, suffix=f"{os.getpid()}_{secrets.token_hex(3)}", server=server, keep=args.keep)
    wanted_redis = getattr(args, "redis", None) if redis != "never" else None
    if wanted_redis and wanted_redis.lower() == "none":
        wanted_redis = None
    if redis == "required" and not wanted_redis:
        raise SystemExit(
            f"bench/{name}: this benchmark measures with Redis and none was given: pass --redis redis://HOST:PORT"
            " (or set REDIS_URL); the run claims an empty db of its own on that server"
        )
    atexit.register(run.cleanup)
    if args.database:
        run.database = args.database
    else:
        run.database = run.create_database(name)
    run.database_url = run.url_of(run.database)
    if wanted_redis:
        run.redis_url, run.redis_token = _claim_redis(wanted_redis, run)
    where = f"{urlparse(server).hostname or 'localhost'}:{urlparse(server).port or 5432}"
    ending = "kept (--keep)" if run.keep else "dropped at exit"
    database_fate = "given, used as-is" if args.database else f"created, {ending}"
    if run.redis_url:
        redis_fate = "claimed, " + ("kept (--keep)" if run.keep else "flushed at exit")
    elif redis == "never":
        redis_fate = "not used"
    else:
        redis_fate = "local-memory cache, in-process counters and breakers, tasks inline"
    print(f"bench: database {run.database} on {where} ({database_fate}); redis {run.redis} ({redis_fate})", flush=True)

    os.environ["DATABASE_URL"] = run.database_url
    # Empty, not unset: settings would otherwise take REDIS_URL from a .env file.
    os.environ["REDIS_URL"] = run.redis_url
    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.dev")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Where the ledger exports its seal heads: a directory of the run's own (settings' default is the development one).
    seals = ROOT / "var" / f"{run.database}-seals"
    shutil.rmtree(seals, ignore_errors=True)
    os.environ["LEDGER_SEAL_EXPORT"] = str(seals)
    if not run.keep:
        atexit.register(shutil.rmtree, seals, ignore_errors=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.database and not reuse:
        _require_empty(run.database, tuple(fresh_tables))
    return run


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP end the process as SystemExit does, so that `finally` blocks and atexit run (a timeout, a
    closed terminal); Ctrl-C already does, as KeyboardInterrupt."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL") or DEFAULT_SERVER
    parsed = urlparse(url)
    if not parsed.scheme.startswith("postgres"):
        raise SystemExit("benchmarks run on PostgreSQL: DATABASE_URL=postgres://USER@HOST:PORT names the server")
    named = parsed.path.strip("/")
    if named and named != "postgres":
        print(
            f"bench: DATABASE_URL names database {named}: only its server is used (--database {named} runs in it)",
            file=sys.stderr,
        )
    return urlunparse(parsed._replace(path="/postgres"))


def _admin(server: str, statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(server, connect_timeout=10)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def _require_empty(database: str, tables: tuple[str, ...]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        holding = []
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            count = cursor.fetchone()[0]
            if count:
                holding.append(f"{count} rows in {table}")
    if holding:
        raise SystemExit(
            f"database {database} already holds data ({', '.join(holding)}): a benchmark seeds and counts its own"
            " rows; give an empty database, or none (the run then creates its own)"
        )


def _close_django_connections() -> None:
    try:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
    except Exception:  # the drop that follows closes them anyway (FORCE)
        pass


def _with_db(url: str, db: int) -> str:
    parsed = urlparse(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parsed.query) if k != "db"])
    return urlunparse(parsed._replace(path=f"/{db}", query=query))


def _masked(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        netloc = f"{parsed.username or ''}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
        parsed = parsed._replace(netloc=netloc)
    return urlunparse(parsed)


def _claim_redis(url: str, run: Run) -> tuple[str, str]:
    """Claims an empty db of the run's own on `url`'s server: the db the URL names if it is empty, else the first, from
    the highest down to 1, that is; claimed by taking this run's mark (SET NX) with nothing else in it. Never db 0, the
    one everything uses by default. Returns the claimed db's URL and the mark."""
    import redis

    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise SystemExit(f"--redis takes a redis:// URL or 'none', not {_masked(url)}")
    named = dict(parse_qsl(parsed.query)).get("db") or parsed.path.strip("/")
    token = f"{socket.gethostname()}:{os.getpid()}:{run.database}:{int(time.time())}"
    try:
        first = redis.Redis.from_url(_with_db(url, 0), socket_timeout=5, socket_connect_timeout=5)
        try:
            count = int(first.config_get("databases").get("databases", 16))
        except redis.ResponseError:  # CONFIG refused (a managed server): Redis' default
            count = 16
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {_masked(url)} does not answer: {exc}") from exc
    order = list(range(count - 1, 0, -1))
    if named.isdigit() and int(named) in order:
        order.remove(int(named))
        order.insert(0, int(named))
    for db in order:
        client = redis.Redis.from_url(_with_db(url, db), socket_timeout=5)
        if client.dbsize() or not client.set(REDIS_CLAIM_KEY, token, nx=True):
            continue
        if client.dbsize() == 1:
            if named and named != str(db):
                print(f"bench: Redis db {named} is not free (holds keys, or is db 0): claimed db {db}", file=sys.stderr)
            return _with_db(url, db), token
        # Something else wrote there meanwhile: not ours after all.
        client.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            1,
            REDIS_CLAIM_KEY,
            token,
        )
    raise SystemExit(
        f"no empty Redis db (1-{count - 1}) on {_masked(url)} to claim: every one holds keys (another run's, or a"
        f" run's kept with --keep or killed with SIGKILL: its db holds the key {REDIS_CLAIM_KEY})"
    )


def run_workers(
    workers: int, seconds: float, target: Callable[[int, Callable[[], float]], list[float]]
) -> tuple[int, list[float], float]:
    """Runs `target(worker_index, go)` in `workers` forked processes; each returns its latencies in seconds.

    A worker first loads what it needs (its rows, the cached routing configuration, its database connection), then
    calls `go()`, which waits until every worker is ready and returns the deadline: the window measures steady-state
    work, not process start-up. Returns (operations, latencies, elapsed seconds from the moment all are ready until
    the last finishes). Forking (not pickling) lets `target` be a closure. Interrupted, it stops the workers.
    """
    from django.db import connections

    connections.close_all()
    context = mp.get_context("fork")
    queue = context.Queue()
    ready = context.Barrier(workers + 1)
    processes = [
        context.Process(target=_run_one, args=(target, index, seconds, ready, queue)) for index in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        ready.wait(timeout=300)
        start = time.perf_counter()
        results = [queue.get() for _ in processes]
        elapsed = time.perf_counter() - start
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
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


def insert_columns(model: Any, given: dict[str, str]) -> tuple[str, str]:
    """The column list and the SELECT list of an INSERT … SELECT into `model`'s table: `given` expressions, every
    other column its Django default (NULL where nullable and none), a `%` in a default doubled: the statement runs
    with parameters."""
    from django.db.models import NOT_PROVIDED
    from psycopg2.extensions import adapt

    names, values = [], []
    for model_field in model._meta.concrete_fields:
        if model_field.primary_key:
            continue
        names.append(f'"{model_field.column}"')
        if model_field.column in given:
            values.append(given[model_field.column])
        elif model_field.default is NOT_PROVIDED and model_field.null:
            values.append("NULL")
        else:
            default = model_field.get_default()
            if isinstance(default, (dict, list)):
                values.append(f"'{json.dumps(default)}'::jsonb")
            else:
                values.append(adapt(default).getquoted().decode().replace("%", "%%"))
    return ", ".join(names), ", ".join(values)
