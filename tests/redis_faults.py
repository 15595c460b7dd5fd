"""Redis going wrong, for tests: nothing listening, a server that never answers, one that stops and comes back.

`point_redis_at(url)` points everything that uses Redis — the cache, the risk counters, the breakers, the rate limit,
the sign-in counts, /healthz — at `url`, and puts it all back (and forgets every fallback) after the test.
`redis_down` points it at a closed port. `no_hang(seconds)` fails what it wraps if it has not returned after a
generous time: a guard against waiting for ever, never a measure of speed.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.redis_fallback import reset_fallbacks
from payments.health import set_health_store
from payments.risk import set_counter_store

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connection is refused at once


class Hung(BaseException):  # not an Exception: no handler on the way may take it for an error it can fall back from
    pass


@contextlib.contextmanager
def no_hang(seconds: float = 30.0) -> Iterator[None]:
    def hung(signum: int, frame: Any) -> None:
        raise Hung(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def _fallbacks_forgotten() -> Iterator[None]:
    """Every test starts with every use of Redis on Redis: no pause or warning left by another test's failures."""
    reset_fallbacks()
    yield
    reset_fallbacks()


def _forget_stores() -> None:
    set_counter_store(None)
    set_health_store(None)
    reset_fallbacks()


@pytest.fixture
def point_redis_at(settings: Any) -> Iterator[Callable[[str], None]]:
    def point(url: str) -> None:
        settings.REDIS_URL = url
        settings.CACHES = {
            "default": {"BACKEND": "core.cache.RedisCacheWithFallback", "LOCATION": url, "KEY_PREFIX": "mengka"}
        }
        _forget_stores()

    yield point
    _forget_stores()


@pytest.fixture
def redis_down(point_redis_at: Callable[[str], None]) -> None:
    point_redis_at(CLOSED)


class SilentServer:
    """Accepts connections (the kernel does, from the backlog) and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def silent_redis() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


class RedisProxy:
    """A relay on a port of its own to the test Redis: `stop()` is Redis going away (every connection dropped, the port
    refusing new ones), `start()` it coming back on the same port. `url` is the test Redis's db through the relay,
    `upstream_url` the same db reached directly."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_url = upstream
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"redis://127.0.0.1:{self.port}{parts.path}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def redis_proxy() -> Iterator[RedisProxy]:
    from django.conf import settings

    proxy = RedisProxy(settings.REDIS_URL)
    proxy.start()
    yield proxy
    proxy.stop()
