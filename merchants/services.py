"""Merchants: writes."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import audit_record, snapshot
from core.crypto import decrypt, encrypt
from core.enqueue import enqueue_on_commit
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.text import ascii_digits
from members.models import MemberBank

from .models import (
    ApiKey,
    Event,
    Merchant,
    MerchantApplication,
    Mode,
    SettlementAccount,
    SettlementAccountChange,
    Store,
    WebhookDelivery,
    WebhookEndpoint,
)
from .uscc import uscc_valid

EVENT_TYPES = (
    "payment.created",
    "payment.requires_capture",
    "payment.succeeded",
    "payment.failed",
    "payment.processing",
    "payment.canceled",
    "refund.succeeded",
    "refund.failed",
    "refund.pending",
)


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


@transaction.atomic
def merchant_create(
    *,
    code: str,
    legal_name: str,
    display_name: str,
    sponsor_bank: MemberBank,
    category_code: str = "5999",
    spend_category: str = "other",
    actor: Any = None,
) -> Merchant:
    """Creates an active merchant under a sponsor that holds an acquiring licence (no 二清: funds go through it)."""
    if not sponsor_bank.acquiring_licence or sponsor_bank.status != MemberBank.Status.ACTIVE:
        raise ValidationFailed("The sponsor must be an active member with an acquiring licence.", param="sponsor_bank")
    if Merchant.objects.filter(code=code).exists():
        raise Conflict(f"A merchant with code {code} exists.", code="merchant_exists", param="code")
    merchant = Merchant(
        code=code,
        legal_name=legal_name,
        display_name=display_name,
        sponsor_bank=sponsor_bank,
        category_code=category_code,
        spend_category=spend_category,
    )
    merchant.full_clean()
    merchant.save()
    audit_record(actor=actor, action="merchant.create", obj=merchant, after=snapshot(merchant), bank_id=sponsor_bank.pk)
    return merchant


# --- API keys -------------------------------------------------------------------------------------------------------

API_KEY_PREFIX_LENGTH = 12  # "sk_test_" + four characters: enough to recognise a key, useless to guess it
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


@transaction.atomic
def api_key_create(
    *,
    merchant: Merchant,
    mode: str = Mode.TEST,
    scope: str = ApiKey.Scope.WRITE,
    expires_at: datetime | None = None,
    actor: Any = None,
) -> IssuedKey:
    """Issues a secret key `sk_<mode>_<random>`; only its SHA-256 and a visible prefix are kept."""
    if mode not in Mode.values:
        raise ValidationFailed("mode is test or live.", code="invalid_mode", param="mode")
    if scope not in ApiKey.Scope.values:
        raise ValidationFailed("scope is read or write.", code="invalid_scope", param="scope")
    raw_key = f"sk_{mode}_{secrets.token_urlsafe(32).replace('-', 'x').replace('_', 'y')}"
    api_key = ApiKey.objects.create(
        merchant=merchant,
        mode=mode,
        scope=scope,
        prefix=raw_key[:API_KEY_PREFIX_LENGTH],
        key_hash=api_key_hash(raw_key),
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="api_key.create",
        obj=api_key,
        after={"prefix": api_key.prefix, "mode": mode, "scope": scope, "merchant": merchant.code},
        bank_id=merchant.sponsor_bank_id,
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Any = None, reason: str = "") -> ApiKey:
    locked = ApiKey.objects.select_for_update().select_related("merchant").get(pk=api_key.pk)
    if locked.revoked_at is not None:
        return locked
    locked.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="api_key.revoke",
        obj=locked,
        after={"prefix": locked.prefix},
        reason=reason,
        bank_id=locked.merchant.sponsor_bank_id,
    )
    return locked


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, overlap_hours: int = 24, actor: Any = None) -> IssuedKey:
    """Issues a replacement with the same mode and scope; the old key keeps working for `overlap_hours`."""
    if not 0 <= overlap_hours <= 24 * 30:
        raise ValidationFailed("overlap_hours is 0 to 720.", code="invalid_overlap", param="overlap_hours")
    locked = ApiKey.objects.select_for_update().select_related("merchant").get(pk=api_key.pk)
    if locked.revoked_at is not None:
        raise Conflict("A revoked key cannot be rotated.", code="api_key_revoked")
    issued = api_key_create(merchant=locked.merchant, mode=locked.mode, scope=locked.scope, actor=actor)
    ends = timezone.now() + timedelta(hours=overlap_hours)
    if locked.expires_at is None or locked.expires_at > ends:
        locked.expires_at = ends
        locked.save(update_fields=["expires_at"])
    audit_record(
        actor=actor,
        action="api_key.rotate",
        obj=locked,
        after={"prefix": locked.prefix, "replaced_by": issued.api_key.prefix, "expires_at": str(ends)},
        bank_id=locked.merchant.sponsor_bank_id,
    )
    return issued


def api_key_touch(*, api_key: ApiKey) -> None:
    """Records use at most once a minute per key: one guarded UPDATE, no write on most requests."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    api_key.last_used_at = now


# --- stores ---------------------------------------------------------------------------------------------------------


@transaction.atomic
def store_create(
    *, merchant: Merchant, code: str, name: str, city: str = "", livemode: bool = True, actor: Any = None
) -> Store:
    if Store.objects.filter(merchant=merchant, livemode=livemode, code=code).exists():
        raise Conflict(f"A store with code {code} exists.", code="store_exists", param="code")
    store = Store(merchant=merchant, code=code, name=name, city=city, livemode=livemode)
    try:
        store.full_clean()
    except DjangoValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ValidationFailed(messages[0], param=field) from None
    store.save()
    audit_record(actor=actor, action="store.create", obj=store, after=snapshot(store), bank_id=merchant.sponsor_bank_id)
    return store


# --- webhooks -------------------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _validate_event_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(f"Unknown event type {unknown[0]!r}.", code="invalid_event_type", param="event_types")
    return sorted(set(event_types))


def _validate_url(url: str) -> None:
    try:
        URLValidator(schemes=["https", "http"])(url)
    except DjangoValidationError:
        raise ValidationFailed("Enter a valid http(s) URL.", code="invalid_url", param="url") from None


@transaction.atomic
def webhook_endpoint_create(
    *,
    merchant: Merchant,
    url: str,
    event_types: list[str],
    description: str = "",
    livemode: bool = True,
    actor: Any = None,
) -> CreatedEndpoint:
    """An endpoint that receives the merchant's events of one mode (a test key's endpoint gets test events)."""
    _validate_url(url)
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant,
        url=url,
        event_types=_validate_event_types(event_types),
        description=description[:200],
        secret_encrypted=encrypt(secret),
        livemode=livemode,
    )
    audit_record(
        actor=actor,
        action="webhook_endpoint.create",
        obj=endpoint,
        after={"url": url, "event_types": endpoint.event_types, "livemode": livemode},
        bank_id=merchant.sponsor_bank_id,
    )
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


@transaction.atomic
def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
    actor: Any = None,
) -> WebhookEndpoint:
    before = {"url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled}
    if url is not None:
        _validate_url(url)
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = _validate_event_types(event_types)
    if enabled is not None:
        endpoint.enabled = enabled
    if description is not None:
        endpoint.description = description[:200]
    endpoint.save()
    audit_record(
        actor=actor,
        action="webhook_endpoint.update",
        obj=endpoint,
        before=before,
        after={"url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled},
        bank_id=endpoint.merchant.sponsor_bank_id,
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: Any = None) -> None:
    audit_record(
        actor=actor,
        action="webhook_endpoint.delete",
        obj=endpoint,
        before={"url": endpoint.url},
        bank_id=endpoint.merchant.sponsor_bank_id,
    )
    endpoint.delete()


def event_emit(*, merchant: Merchant, type: str, payload: dict[str, Any], livemode: bool = True) -> Event:
    """Appends one event (see `events_emit`)."""
    return events_emit(merchant=merchant, events=[(type, payload)], livemode=livemode)[0]


def events_emit(*, merchant: Merchant, events: list[tuple[str, dict[str, Any]]], livemode: bool = True) -> list[Event]:
    """Appends events in order, with a delivery per subscribed endpoint for each: the outbox. Called by the service
    that changes what the events describe, in the transaction that changes it, so the events are written if and only
    if the change is; their deliveries are queued once that transaction commits (`webhook_deliver`), and the
    `webhooks_retry` job sends any a lost queue message left behind.

    The events are of one mode (their object's); only the merchant's enabled endpoints of that mode that take the
    event's type (an empty list of types takes every type) receive them."""
    for type, _payload in events:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
    if not events:
        return []
    now = timezone.now()
    rows = [
        Event(
            public_id=new_public_id("evt"),
            merchant=merchant,
            type=type,
            payload=payload,
            object_id=str(payload.get("id", ""))[:64],
            livemode=livemode,
            created_at=now,
        )
        for type, payload in events
    ]
    endpoints = WebhookEndpoint.objects.filter(merchant=merchant, livemode=livemode, enabled=True)
    subscribed = list(endpoints.values_list("pk", "event_types"))
    with transaction.atomic(savepoint=False):  # the caller's transaction, or one of its own
        Event.objects.bulk_create(rows)
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(event=event, endpoint_id=endpoint_id, next_attempt_at=now)
            for event in rows
            for endpoint_id, types in subscribed
            if not types or event.type in types
        )
    delivery_ids = [delivery.pk for delivery in deliveries]
    if delivery_ids:
        from .tasks import webhook_deliver

        enqueue_on_commit(webhook_deliver, *[(pk,) for pk in delivery_ids], otherwise="webhooks_retry sends it")
    return rows


def event_body(event: Event) -> dict[str, Any]:
    return {
        "id": event.public_id,
        "object": "event",
        "type": event.type,
        "livemode": event.livemode,
        "created": int(event.created_at.timestamp()),
        "data": {"object": event.payload},
    }


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` under the endpoint's secret."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_deliver(*, delivery_id: int) -> WebhookDelivery:
    """Sends one delivery if it is due (outside any transaction), then records the outcome and the next attempt."""
    now = timezone.now()
    with transaction.atomic():
        claimed = WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        ).update(next_attempt_at=now + timedelta(seconds=DELIVERY_TIMEOUT * 3))  # a lease against a second worker
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
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
    WebhookDelivery.objects.filter(pk=delivery_id).update(**fields)
    delivery.refresh_from_db()
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


def webhook_deliveries_due(*, limit: int = 500) -> list[int]:
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=timezone.now()
        ).values_list("pk", flat=True)[:limit]
    )


@transaction.atomic
def webhook_delivery_resend(*, delivery: WebhookDelivery, actor: Any = None) -> WebhookDelivery:
    """Queues a delivery again (after a give-up, or to send a succeeded one once more)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
    )
    audit_record(
        actor=actor,
        action="webhook_delivery.resend",
        obj=delivery,
        bank_id=delivery.endpoint.merchant.sponsor_bank_id,
    )
    from .tasks import webhook_deliver

    enqueue_on_commit(webhook_deliver, (delivery.pk,), otherwise="webhooks_retry sends it")
    delivery.refresh_from_db()
    return delivery


# --- onboarding -----------------------------------------------------------------------------------------------------


def _same_name(account_name: str, legal_name: str) -> bool:
    """Names compared the way a bank would: full-width brackets and spacing do not make another holder."""

    def normal(name: str) -> str:
        return "".join(name.replace("（", "(").replace("）", ")").split()).casefold()

    return normal(account_name) == normal(legal_name)


def _require_operator_of(actor: Any, bank_id: int) -> None:
    if actor is None:
        return
    from core.scoping import operator_scope

    if not operator_scope(actor).can_write(bank_id):
        raise PermissionDenied("Only the sponsor bank's operators may decide this.")


def _account_digits(account_number: str) -> str:
    digits = "".join(account_number.split())
    if not ascii_digits(digits) or not 8 <= len(digits) <= 32:
        raise ValidationFailed(
            "The settlement account number is 8 to 32 digits.", code="invalid_account", param="account_number"
        )
    return digits


@transaction.atomic
def merchant_application_submit(
    *,
    legal_name: str,
    display_name: str,
    credit_code: str,
    category_code: str,
    spend_category: str,
    sponsor_bank: MemberBank,
    settlement_account_name: str,
    settlement_bank_name: str,
    settlement_account_number: str,
    contact_name: str,
    contact_phone: str,
    contact_email: str,
    store_name: str,
    store_city: str,
) -> MerchantApplication:
    credit_code = credit_code.strip().upper()
    if not uscc_valid(credit_code):
        raise ValidationFailed(
            "This is not a valid unified social credit code (GB 32100-2015 check character).",
            code="invalid_credit_code",
            param="credit_code",
        )
    if not sponsor_bank.acquiring_licence or sponsor_bank.status != MemberBank.Status.ACTIVE:
        raise ValidationFailed("The sponsor must be an active member with an acquiring licence.", param="sponsor_bank")
    if not _same_name(settlement_account_name, legal_name):
        raise ValidationFailed(
            "The settlement account must be in the merchant's own legal name.",
            code="settlement_account_not_own",
            param="settlement_account_name",
        )
    digits = _account_digits(settlement_account_number)
    if MerchantApplication.objects.filter(
        credit_code=credit_code, status__in=[MerchantApplication.Status.SUBMITTED, MerchantApplication.Status.APPROVED]
    ).exists():
        raise Conflict(
            "An application for this credit code is open or approved.", code="application_exists", param="credit_code"
        )
    application = MerchantApplication(
        legal_name=legal_name.strip(),
        display_name=display_name.strip(),
        credit_code=credit_code,
        category_code=category_code,
        spend_category=spend_category,
        sponsor_bank=sponsor_bank,
        settlement_account_name=settlement_account_name.strip(),
        settlement_bank_name=settlement_bank_name.strip(),
        settlement_account_encrypted=encrypt(digits),
        settlement_account_last4=digits[-4:],
        contact_name=contact_name.strip(),
        contact_phone=contact_phone.strip(),
        contact_email=contact_email.strip(),
        store_name=store_name.strip(),
        store_city=store_city.strip(),
    )
    try:
        application.full_clean()
    except DjangoValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ValidationFailed(messages[0], param=field) from None
    application.save()
    audit_record(
        actor=None,
        action="merchant_application.submit",
        obj=application,
        after={"legal_name": application.legal_name, "credit_code": credit_code},
        bank_id=sponsor_bank.pk,
    )
    return application


@dataclass(frozen=True)
class ApprovedApplication:
    merchant: Merchant
    store: Store
    test_key: IssuedKey
    live_key: IssuedKey


@transaction.atomic
def merchant_application_approve(*, application: MerchantApplication, actor: Any) -> ApprovedApplication:
    """Creates the merchant, its settlement account, its first store (live, and its twin in test mode) and a test and
    a live key (shown once)."""
    locked = MerchantApplication.objects.select_for_update().select_related("sponsor_bank").get(pk=application.pk)
    _require_operator_of(actor, locked.sponsor_bank_id)
    if locked.status != MerchantApplication.Status.SUBMITTED:
        raise Conflict(f"This application is {locked.status}.", code="application_decided")
    if not locked.risk_grade:
        raise ValidationFailed("Grade the risk before approving.", code="risk_grade_required", param="risk_grade")
    merchant = merchant_create(
        code=f"MA{locked.pk:06d}",
        legal_name=locked.legal_name,
        display_name=locked.display_name,
        sponsor_bank=locked.sponsor_bank,
        category_code=locked.category_code,
        spend_category=locked.spend_category,
        actor=actor,
    )
    SettlementAccount.objects.create(
        merchant=merchant,
        account_name=locked.settlement_account_name,
        bank_name=locked.settlement_bank_name,
        account_encrypted=locked.settlement_account_encrypted,
        account_last4=locked.settlement_account_last4,
    )
    store = store_create(merchant=merchant, code="S001", name=locked.store_name, city=locked.store_city, actor=actor)
    # Its twin in test mode, so the sandbox starts with the same first store the test key can see.
    store_create(
        merchant=merchant, code="S001", name=locked.store_name, city=locked.store_city, livemode=False, actor=actor
    )
    test_key = api_key_create(merchant=merchant, mode=Mode.TEST, actor=actor)
    live_key = api_key_create(merchant=merchant, mode=Mode.LIVE, actor=actor)
    locked.status = MerchantApplication.Status.APPROVED
    locked.merchant = merchant
    locked.reviewed_by = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "merchant", "reviewed_by", "reviewed_at"])
    audit_record(
        actor=actor,
        action="merchant_application.approve",
        obj=locked,
        after={"merchant": merchant.code, "risk_grade": locked.risk_grade},
        bank_id=locked.sponsor_bank_id,
    )
    return ApprovedApplication(merchant=merchant, store=store, test_key=test_key, live_key=live_key)


@transaction.atomic
def merchant_application_reject(*, application: MerchantApplication, actor: Any, note: str = "") -> None:
    locked = MerchantApplication.objects.select_for_update().get(pk=application.pk)
    _require_operator_of(actor, locked.sponsor_bank_id)
    if locked.status != MerchantApplication.Status.SUBMITTED:
        raise Conflict(f"This application is {locked.status}.", code="application_decided")
    locked.status = MerchantApplication.Status.REJECTED
    locked.review_note = note[:500]
    locked.reviewed_by = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "review_note", "reviewed_by", "reviewed_at"])
    audit_record(
        actor=actor, action="merchant_application.reject", obj=locked, reason=note, bank_id=locked.sponsor_bank_id
    )


def settlement_account_check(*, merchant: Merchant, account_name: str, account_number: str) -> str:
    """The account's digits, if it may be the merchant's settlement account (its own name, a plausible number)."""
    if not _same_name(account_name, merchant.legal_name):
        raise ValidationFailed(
            "The settlement account must be in the merchant's own legal name.",
            code="settlement_account_not_own",
            param="account_name",
        )
    return _account_digits(account_number)


@transaction.atomic
def settlement_change_request(
    *, merchant: Merchant, account_name: str, bank_name: str, account_number: str, actor: Any
) -> SettlementAccountChange:
    _require_operator_of(actor, merchant.sponsor_bank_id)
    digits = settlement_account_check(merchant=merchant, account_name=account_name, account_number=account_number)
    change = SettlementAccountChange.objects.create(
        merchant=merchant,
        account_name=account_name.strip(),
        bank_name=bank_name.strip(),
        account_encrypted=encrypt(digits),
        account_last4=digits[-4:],
        requested_by=actor,
    )
    audit_record(
        actor=actor,
        action="settlement_account.change_request",
        obj=change,
        after={"account_last4": change.account_last4, "bank_name": change.bank_name},
        bank_id=merchant.sponsor_bank_id,
    )
    return change


@transaction.atomic
def settlement_change_approve(*, change: SettlementAccountChange, actor: Any) -> SettlementAccount:
    """Applies a requested change; the approver must be another operator of the sponsor bank (four eyes)."""
    locked = SettlementAccountChange.objects.select_for_update().select_related("merchant").get(pk=change.pk)
    _require_operator_of(actor, locked.merchant.sponsor_bank_id)
    if locked.status != SettlementAccountChange.Status.PENDING:
        raise Conflict(f"This change is {locked.status}.", code="change_decided")
    if actor is None or actor.pk == locked.requested_by_id:
        raise PermissionDenied("A second operator must approve a settlement account change.", code="four_eyes")
    previous = SettlementAccount.objects.filter(merchant=locked.merchant).first()
    before = {"bank_name": previous.bank_name, "account_last4": previous.account_last4} if previous else None
    account, _created = SettlementAccount.objects.update_or_create(
        merchant=locked.merchant,
        defaults={
            "account_name": locked.account_name,
            "bank_name": locked.bank_name,
            "account_encrypted": locked.account_encrypted,
            "account_last4": locked.account_last4,
        },
    )
    locked.status = SettlementAccountChange.Status.APPROVED
    locked.decided_by = actor
    locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(
        actor=actor,
        action="settlement_account.change_approve",
        obj=locked,
        before=before,
        after={"bank_name": account.bank_name, "account_last4": account.account_last4},
        bank_id=locked.merchant.sponsor_bank_id,
    )
    return account
