"""Sending webhook deliveries: signed, outside any transaction, retried with back-off for more than 24 hours.

A delivery goes only to the address checked when the endpoint's host was resolved, and only to a public one (unless
WEBHOOK_ALLOW_PRIVATE_HOSTS): no second lookup (DNS rebinding), no proxy, no redirects.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from core.audit import audit_record
from core.crypto import decrypt
from core.enqueue import enqueue_on_commit

from ..models import WebhookDelivery
from .events import event_body

# Back-off after each failed attempt; the last retry comes more than 24 hours after the event.
RETRY_DELAYS = [
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
DELIVERY_TIMEOUT = 10.0
LEASE = timedelta(seconds=DELIVERY_TIMEOUT * 3)  # a claimed attempt's hold against a second worker

# The due queue's window on the event's time (the month deliveries are partitioned on). The first attempt is due at
# the event's time; each failed one is followed by its back-off, and an attempt may hold its lease before that: the
# last of the MAX_ATTEMPTS attempts is due at most RETRY_SPAN (27 h 40 min) after the event. A day's grace on top
# covers attempts that ran late (a worker backlog, a broker or database outage). A pending delivery whose event is
# older than that — an operator's resend of an old one — is read by its own query (webhook_resends_due).
RETRY_SPAN = sum(RETRY_DELAYS, timedelta()) + MAX_ATTEMPTS * LEASE
DUE_GRACE = timedelta(days=1)
DUE_WINDOW = RETRY_SPAN + DUE_GRACE


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` under the endpoint's secret."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_deliver(*, delivery_id: int, event_created_at: datetime | None = None) -> WebhookDelivery:
    """Sends one delivery if it is due (outside any transaction), then records the outcome and the next attempt.

    `event_created_at`, the time of the delivery's event, names its month: each read and write here touches that
    month's partition of deliveries and of events only. Without it (a task queued before deliveries carried it) the
    delivery is first found by id, which looks in every month."""
    if event_created_at is None:
        event_created_at = (
            WebhookDelivery.objects.filter(pk=delivery_id).values_list("event_created_at", flat=True).get()
        )
    this = WebhookDelivery.objects.filter(pk=delivery_id, event_created_at=event_created_at)
    now = timezone.now()
    with transaction.atomic():
        claimed = this.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now).update(
            next_attempt_at=now + LEASE  # a lease against a second worker
        )
    delivery = this.select_related("event", "endpoint").get(event__created_at=event_created_at)
    if not claimed:
        return delivery
    body = json.dumps(event_body(delivery.event), separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Mengka-Webhooks/1",
        "Mengka-Signature": webhook_signature(
            secret=decrypt(delivery.endpoint.secret_encrypted), timestamp=timestamp, body=body
        ),
    }
    code: int | None = None
    error = ""
    try:
        response = _webhook_post(webhook_target(delivery.endpoint.url), body=body, headers=headers)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except (httpx.HTTPError, httpx.InvalidURL, BlockedHost) as exc:
        error = f"{type(exc).__name__}: {exc}"[:255]
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {"attempts": attempts, "response_code": code, "last_error": error}
    if not error:
        fields.update(status=WebhookDelivery.Status.SUCCEEDED, delivered_at=timezone.now(), next_attempt_at=None)
    elif attempts >= MAX_ATTEMPTS:
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        fields.update(next_attempt_at=timezone.now() + RETRY_DELAYS[attempts - 1])
    this.update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)
    return delivery


class BlockedHost(Exception):
    """The endpoint resolves to an address Mengka must not call (loopback, private, link-local, multicast, ...)."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _public(ip: IPAddress) -> bool:
    """Whether `ip` is a public unicast address, looking through IPv6 forms that carry an IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _public(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not _public(embedded):
            return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified
    )


@dataclass(frozen=True)
class WebhookTarget:
    """Where a delivery goes: the address checked when the endpoint's host was resolved, and nothing else.

    Resolving once and connecting to that address closes the gap a second lookup would leave (DNS rebinding: a name
    that answers a public address to the check and a private one to the connection).
    """

    url: str  # the endpoint's URL with the checked address in place of the host
    address: str
    host_header: str  # the endpoint's host (and port), as the receiver expects it
    tls_hostname: str | None  # https: sent as SNI, and the name the certificate is verified against


def webhook_target(url: str) -> WebhookTarget:
    """Resolves the endpoint's host once; refuses it if any address is not public (unless
    WEBHOOK_ALLOW_PRIVATE_HOSTS, for development and tests) and pins the first."""
    parsed = httpx.URL(url)
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded, IPv6 without brackets
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BlockedHost(f"cannot resolve {host}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise BlockedHost(f"cannot resolve {host}")
    if not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS and not all(_public(address) for address in addresses):
        raise BlockedHost(f"{host} resolves to a non-public address")
    address = str(addresses[0])
    return WebhookTarget(
        url=str(parsed.copy_with(host=address)),
        address=address,
        host_header=parsed.netloc.decode("ascii"),
        tls_hostname=host if parsed.scheme == "https" else None,
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The usual trusted roots (or SSL_CERT_FILE / SSL_CERT_DIR when set), with hostname checking on: against the
    endpoint's name, see `_webhook_post`."""
    return httpx.create_ssl_context()


def _webhook_post(target: WebhookTarget, *, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POSTs to the pinned address: the Host header and TLS (SNI and certificate check) use the endpoint's name.

    No proxy from the environment (it would make its own lookup) and no redirects (they could lead anywhere)."""
    extensions = {"sni_hostname": target.tls_hostname} if target.tls_hostname else {}
    with httpx.Client(
        verify=_tls_context(), trust_env=False, follow_redirects=False, timeout=DELIVERY_TIMEOUT
    ) as client:
        return client.post(
            target.url, content=body, headers={**headers, "Host": target.host_header}, extensions=extensions
        )


def webhook_deliveries_due(*, limit: int = 500, per_merchant: int | None = None) -> list[tuple[int, datetime]]:
    """Due deliveries as (id, event's time), merchants taking turns: each merchant's oldest first, then each one's
    second, and so on, at most `per_merchant` (WEBHOOK_RETRIES_PER_MERCHANT) each — one merchant's backlog never holds
    another's back. Only deliveries of events from the last DUE_WINDOW are read: the months it spans, not every one."""
    per_merchant = per_merchant or settings.WEBHOOK_RETRIES_PER_MERCHANT
    now = timezone.now()
    turns = (
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            event_created_at__gte=now - DUE_WINDOW,
            event_created_at__lte=now,
        )
        .annotate(
            turn=Window(RowNumber(), partition_by=F("endpoint__merchant_id"), order_by=(F("next_attempt_at"), F("pk")))
        )
        .order_by("turn", "next_attempt_at", "pk")
        .values_list("pk", "event_created_at", "turn")
    )
    return [(pk, event_created_at) for pk, event_created_at, turn in turns.filter(turn__lte=per_merchant)[:limit]]


def webhook_resends_due(*, limit: int = 100) -> list[tuple[int, datetime]]:
    """Due resends of old events' deliveries, as (id, event's time), oldest first: pending deliveries whose event is
    older than DUE_WINDOW, so the due queue does not read them — an operator's resend whose task the broker could not
    take, or one that failed and waits for its next attempt.

    The one read of deliveries that names no month, on purpose: a resend may be of any month. It reads each month's
    (status, next_attempt_at) index, where an old month holds no pending row but these resends, so each month costs
    one short index probe."""
    now = timezone.now()
    resends = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, event_created_at__lt=now - DUE_WINDOW
    ).order_by("next_attempt_at", "pk")
    return list(resends.values_list("pk", "event_created_at")[:limit])


@transaction.atomic
def webhook_delivery_resend(*, delivery: WebhookDelivery, actor: Any = None) -> WebhookDelivery:
    """Queues a delivery again (after a give-up, or to send a succeeded one once more), in its event's month.

    Its task sends it; if the broker cannot take the task, the retry job does: from the due queue while its event is
    within DUE_WINDOW, from the resends' (webhook_resends_due) after."""
    this = WebhookDelivery.objects.filter(pk=delivery.pk, event_created_at=delivery.event_created_at)
    now = timezone.now()
    this.update(status=WebhookDelivery.Status.PENDING, next_attempt_at=now)
    audit_record(
        actor=actor,
        action="webhook_delivery.resend",
        obj=delivery,
        bank_id=delivery.endpoint.merchant.sponsor_bank_id,
    )
    from ..tasks import webhook_deliver

    enqueue_on_commit(
        webhook_deliver, (delivery.pk, delivery.event_created_at.isoformat()), otherwise="webhooks_retry sends it"
    )
    delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.PENDING, now
    return delivery
