"""Reads for reports, statements, dashboards and exports from a read replica, when one is configured.

`DATABASE_REPLICA_URL` adds the database alias "replica" (a streaming replica of the primary). Nothing reads from it
unless asked: a view wrapped in `replica_view` (or code inside `replica_reads()`) sends its reads there, and every
other read, and every write, goes to the primary. Reads still go to the primary:
- inside a transaction on the primary (they must see that transaction's writes, and take its locks);
- for a request that follows one of its user's own writes within `REPLICA_PIN_SECONDS`: after any POST, PUT, PATCH
  or DELETE (whatever its answer: a refused form may have written an audit row), `ReplicaPinMiddleware` sets a short
  cookie, and a request carrying it reads the primary, so that a
  page after a change shows the change even while the replica lags behind. An API client keeps no cookie: a request
  authenticated by a credential that names a pin (`replica_pin`, a merchant's API key names its merchant) pins that
  name in the cache instead, and every request with a credential of that name reads the primary for as long; while
  Redis fails (the cache is then this process's own) such requests always read the primary;
- for any request that is not GET or HEAD.

A wrapped view's reads include the template it renders and the body it streams: both happen inside the replica's
context (a template response is rendered there, a streamed body is read there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.template.response import SimpleTemplateResponse

from .cache import shared_cache_down

REPLICA = "replica"
PIN_COOKIE = "mengka_primary"
PIN_CACHE_KEY = "replica-pin:{}"
SAFE_METHODS = ("GET", "HEAD")

_replica_reads: ContextVar[bool] = ContextVar("replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


@contextmanager
def replica_reads() -> Iterator[None]:
    """Reads inside go to the replica (outside any transaction on the primary), when one is configured."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


class ReplicaRouter:
    """Writes, migrations and every read not asked for go to the primary; reads inside `replica_reads()` to the
    replica."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if _replica_reads.get() and replica_configured() and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True  # the replica holds the primary's rows: an object read there relates to one read here

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return db == DEFAULT_DB_ALIAS


def _pin_name(request: HttpRequest) -> str | None:
    """The pin the request's credential names (DRF sets `auth` on the request it wraps), if any."""
    name = getattr(getattr(request, "auth", None), "replica_pin", None)
    return name if isinstance(name, str) else None


def pinned_to_primary(request: HttpRequest) -> bool:
    if request.method not in SAFE_METHODS or PIN_COOKIE in request.COOKIES:
        return True
    name = _pin_name(request)
    if name is None:
        return False
    # While Redis fails, a pin another process wrote cannot be seen here: read the primary.
    return shared_cache_down() or cache.get(PIN_CACHE_KEY.format(name)) is not None


def _streamed_in_replica(content: Iterator[bytes]) -> Iterator[bytes]:
    with replica_reads():
        yield from content


def replica_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Serves a read-only view's reads from the replica, unless the request is pinned to the primary."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not replica_configured() or pinned_to_primary(request):
            return view(request, *args, **kwargs)
        with replica_reads():
            response = view(request, *args, **kwargs)
            # A template may still read as it renders, so it renders here; an API's response (no template) holds
            # data already read and is rendered by its framework afterwards.
            if isinstance(response, SimpleTemplateResponse) and response.template_name and not response.is_rendered:
                response.render()
        if isinstance(response, StreamingHttpResponse):
            response.streaming_content = _streamed_in_replica(iter(response))
        return response

    return wrapped


class ReplicaPinMiddleware:
    """After a user's write, their requests read the primary for `REPLICA_PIN_SECONDS`: a cookie for a browser, and
    the credential's pin in the shared cache for an API client."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if replica_configured() and request.method not in SAFE_METHODS:
            response.set_cookie(
                PIN_COOKIE,
                "1",
                max_age=settings.REPLICA_PIN_SECONDS,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure(),
            )
            name = _pin_name(request)
            if name is not None:
                cache.set(PIN_CACHE_KEY.format(name), 1, timeout=settings.REPLICA_PIN_SECONDS)
        return response
