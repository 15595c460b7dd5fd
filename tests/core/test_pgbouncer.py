"""What a connection pooler in transaction mode (PgBouncer) requires of the code, shown through a real PgBouncer with
one server connection shared by two clients: session state (a plain SET, a session advisory lock) leaks from one
client to the other, while what lives in a transaction (SET LOCAL, transaction advisory locks, a server-side cursor
read inside its transaction) does not. Hence job runs refuse such a pooler, and streamed rows read in a transaction.

Needs the `pgbouncer` binary (Debian's package; CI installs it): skipped without it, saying so, and a failure in CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from core.jobs import job_run
from core.selectors import rows_streamed
from members.models import MemberBank
from tests.factories import MemberBankFactory


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer(django_db_setup: None) -> Iterator[dict[str, Any]]:
    """PgBouncer in transaction mode in front of the test run's server, one server connection per database and user."""
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if binary is None:
        reason = "needs pgbouncer: apt-get install pgbouncer (CI installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the PgBouncer tests: {reason}", pytrace=False)
        pytest.skip(reason)
    params = connection.get_connection_params()
    user = params.get("user") or "postgres"
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    (folder / "users.txt").write_text(f'"{user}" "{params.get("password") or ""}"\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={params.get("host") or "127.0.0.1"} port={params.get("port") or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
ignore_startup_parameters = extra_float_digits,options
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
"""
    )
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer will not run as root: it runs as a user who can reach the server's socket
        host = params.get("host") or ""
        runs_as = Path(host).owner() if host.startswith("/") else "postgres"
        shutil.chown(folder, runs_as)
        for child in folder.iterdir():
            shutil.chown(child, runs_as)
        command[1:1] = ["-u", runs_as]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                pytest.fail(f"pgbouncer did not start: {process.stdout.read() if process.stdout else ''} {log}")
            time.sleep(0.1)
    try:
        yield {"host": "127.0.0.1", "port": port, "user": user, "dbname": params["dbname"]}
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _client(pgbouncer: dict[str, Any]) -> Any:
    client = psycopg2.connect(**pgbouncer)
    client.autocommit = True
    return client


def _one(client: Any, sql: str) -> Any:
    with client.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_session_state_leaks_between_clients_and_transaction_state_does_not(pgbouncer: dict[str, Any]) -> None:
    first, second = _client(pgbouncer), _client(pgbouncer)
    try:
        assert _one(first, "SELECT pg_backend_pid()") == _one(second, "SELECT pg_backend_pid()")  # one server session

        _one(first, "SELECT set_config('work_mem', '7MB', false)")  # a plain SET: the session's
        assert _one(second, "SHOW work_mem") == "7MB"  # ... and so the other client's too
        first.autocommit = False
        with first, first.cursor() as cursor:  # a transaction: SET LOCAL ends with it
            cursor.execute("SET LOCAL statement_timeout = '1234ms'")
        first.autocommit = True
        assert _one(second, "SHOW statement_timeout") != "1234ms"

        # A session advisory lock (as job runs take) excludes nobody behind the pooler: the other client is handed
        # the same session, for which the lock is its own.
        assert _one(first, "SELECT pg_try_advisory_lock(4242)") is True
        assert _one(second, "SELECT pg_try_advisory_lock(4242)") is True
        _one(first, "SELECT pg_advisory_unlock_all()")
    finally:
        first.close()
        second.close()


def test_a_server_side_cursor_is_read_within_its_transaction(pgbouncer: dict[str, Any]) -> None:
    """As `rows_streamed` reads: DECLARE and every FETCH in one transaction, which keeps the server session."""
    first, second = _client(pgbouncer), _client(pgbouncer)
    try:
        first.autocommit = False
        with first, first.cursor(name="rows") as cursor:
            cursor.itersize = 2
            cursor.execute("SELECT n FROM generate_series(1, 5) AS n")
            seen = [row[0] for row in cursor]
        assert seen == [1, 2, 3, 4, 5]
        assert _one(second, "SELECT 1") == 1
    finally:
        first.close()
        second.close()


@pytest.mark.django_db
def test_job_runs_refuse_a_transaction_pooler(settings: Any) -> None:
    settings.DATABASE_TRANSACTION_POOLING = True
    with pytest.raises(ImproperlyConfigured, match="connects to PostgreSQL directly"), job_run("tests.pooled"):
        pass


@pytest.mark.django_db(transaction=True)
def test_streamed_rows_are_read_in_a_transaction_of_their_own() -> None:
    MemberBankFactory.create_batch(3)
    assert not connection.in_atomic_block
    seen = []
    for bank in rows_streamed(MemberBank.objects.order_by("pk"), chunk_size=1):
        seen.append(bank.pk)
        assert connection.in_atomic_block
    assert seen == list(MemberBank.objects.order_by("pk").values_list("pk", flat=True))
    assert not connection.in_atomic_block
