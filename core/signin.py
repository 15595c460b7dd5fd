"""Sign-in lockout, one mechanism for the cardholder portal and the operators' admin.

Failed sign-ins are counted per username (from any address) and per client address (for any username), each in a
window of `SIGNIN_FAILURE_WINDOW_SECONDS` from its first failure. When a count reaches its limit
(`SIGNIN_MAX_FAILURES_PER_USERNAME`, `SIGNIN_MAX_FAILURES_PER_ADDRESS`) that username or address is locked out for
`SIGNIN_LOCKOUT_SECONDS`: every sign-in for it is refused, even with the right password, without checking the password,
and the lockout is written to the audit log once. The counts live in the cache (Redis in production, shared by every
web process) and are shared by both sign-in pages, so a password cannot be guessed on one page after the other locked.
While Redis cannot be reached each web process counts and locks on its own (`core.cache`): signing in still works.
A successful sign-in clears its username's count but never the address's: otherwise someone with one account could
reset the address count between guesses at others.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import ngettext

from .audit import audit_record
from .counters import window_count

logger = logging.getLogger(__name__)

USERNAME, ADDRESS = "username", "address"


@dataclass(frozen=True)
class Lockout:
    scope: str  # USERNAME or ADDRESS
    seconds_left: int

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.seconds_left / 60))
        return ngettext(
            "Too many failed sign-ins. Please wait %(minutes)d minute and try again.",
            "Too many failed sign-ins. Please wait %(minutes)d minutes and try again.",
            minutes,
        ) % {"minutes": minutes}


def client_address(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or with `TRUSTED_PROXY_COUNT` proxies in front the address the outermost
    of them saw (the entries further left in X-Forwarded-For are whatever the caller chose to send)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR", ""))


def _key(kind: str, scope: str, value: str) -> str:
    return f"signin:{kind}:{scope}:{hashlib.sha256(value.encode()).hexdigest()}"


def _subjects(request: HttpRequest, username: str) -> list[tuple[str, str]]:
    return [(USERNAME, username.strip().lower()), (ADDRESS, client_address(request))]


def signin_locked(request: HttpRequest, username: str) -> Lockout | None:
    """The lockout in force for this username or this caller's address, if any (the longer one)."""
    now = time.time()
    lockouts = []
    for scope, value in _subjects(request, username):
        until = cache.get(_key("locked", scope, value))
        if until is not None and until > now:
            lockouts.append(Lockout(scope, math.ceil(until - now)))
    if not lockouts:
        return None
    lockout = max(lockouts, key=lambda item: item.seconds_left)
    logger.warning("sign-in refused: %s locked out for %ss more", lockout.scope, lockout.seconds_left)
    return lockout


def signin_failed(request: HttpRequest, username: str, *, surface: str) -> Lockout | None:
    """Counts a failed sign-in on `surface` ("portal", "admin"); returns the lockout it started, if it started one."""
    limits = {USERNAME: settings.SIGNIN_MAX_FAILURES_PER_USERNAME, ADDRESS: settings.SIGNIN_MAX_FAILURES_PER_ADDRESS}
    lockout_seconds = settings.SIGNIN_LOCKOUT_SECONDS
    address = client_address(request)
    started = None
    for scope, value in _subjects(request, username):
        failures = window_count(_key("failures", scope, value), settings.SIGNIN_FAILURE_WINDOW_SECONDS)
        if failures < limits[scope]:
            continue
        # Only the request that sets the lock records it, however many fail at once.
        if cache.add(_key("locked", scope, value), time.time() + lockout_seconds, lockout_seconds):
            cache.delete(_key("failures", scope, value))
            _audit_lockout(scope, username, address, surface, failures, lockout_seconds)
            started = Lockout(scope, lockout_seconds)
    return started


def signin_succeeded(request: HttpRequest, username: str) -> None:
    cache.delete(_key("failures", USERNAME, username.strip().lower()))


def signin_unlock(user: Any, *, actor: Any) -> bool:
    """Lifts the lockout on `user`'s username (an operator, for someone locked out who has proved who they are by other
    means) and clears its failure count; audited. Returns whether a lockout was in force. Address lockouts are not
    lifted here: they end on their own and are about the network, not a person."""
    value = user.get_username().strip().lower()
    until = cache.get(_key("locked", USERNAME, value))
    cache.delete_many([_key("locked", USERNAME, value), _key("failures", USERNAME, value)])
    locked = until is not None and until > time.time()
    if locked:
        audit_record(actor=actor, action="auth.signin_unlocked", obj=user, after={"scope": USERNAME})
    return locked


def _audit_lockout(scope: str, username: str, address: str, surface: str, failures: int, seconds: int) -> None:
    details = {"surface": surface, "scope": scope, "failures": failures, "locked_seconds": seconds, "address": address}
    logger.warning("sign-in lockout: %s after %d failures on the %s", scope, failures, surface)
    if scope == ADDRESS:
        audit_record(actor=None, action="auth.signin_locked", object_type="address", object_id=address, after=details)
        return
    # A username that names no account is not stored: it may be a password typed into the wrong field.
    user = get_user_model().objects.filter(username__iexact=username.strip()).first()
    if user is None:
        audit_record(actor=None, action="auth.signin_locked", object_type="auth.user", after=details)
    else:
        audit_record(actor=None, action="auth.signin_locked", obj=user, after=details)
