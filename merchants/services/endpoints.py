"""Webhook endpoints: where a merchant receives its events of one mode, with the secret that signs them (shown once)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import transaction

from core.audit import audit_record
from core.crypto import encrypt
from core.errors import ValidationFailed

from ..models import Merchant, WebhookEndpoint
from .events import EVENT_TYPES


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
    """An endpoint that receives the merchant's events of one mode (a test key's endpoint gets test events).

    A merchant has at most WEBHOOK_ENDPOINTS_PER_MODE endpoints of a mode, enabled or not: each receives every event
    it takes, so their number bounds the deliveries one event makes. The merchant's row is locked while counting, so
    concurrent requests cannot pass the limit together."""
    _validate_url(url)
    _validate_event_types(event_types)
    Merchant.objects.select_for_update().filter(pk=merchant.pk).exists()
    limit = settings.WEBHOOK_ENDPOINTS_PER_MODE
    if WebhookEndpoint.objects.filter(merchant=merchant, livemode=livemode).count() >= limit:
        raise ValidationFailed(
            f"A merchant may have at most {limit} webhook endpoints per mode; delete one you no longer use.",
            code="endpoint_limit_reached",
        )
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
