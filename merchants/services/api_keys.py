"""API keys: `sk_<mode>_<random>`, shown once; only their SHA-256 and a visible prefix are kept.

A rotated key keeps working for an overlap; a key's use is recorded at most once a minute.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import audit_record
from core.errors import Conflict, ValidationFailed

from ..models import ApiKey, Merchant, Mode

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
