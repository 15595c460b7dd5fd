"""Writing the audit log: one helper for services, used by the scoped admin for every change too."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .logging import redact
from .models import AuditLog
from .requestid import get_request_id

SYSTEM_ACTOR = "system"


@runtime_checkable
class AuditActor(Protocol):
    """Someone acting who is not a user — a merchant's API key — recorded by the label it gives itself."""

    @property
    def audit_label(self) -> str: ...


def snapshot(instance: models.Model) -> dict[str, Any]:
    """A JSON-safe picture of a row for before/after; fields named in `AUDIT_EXCLUDE` (secrets) are left out."""
    excluded = set(getattr(instance, "AUDIT_EXCLUDE", ()))
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if field.name in excluded:
            continue
        data[field.attname] = field.value_from_object(instance)
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder, default=str))


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | AuditActor | None,
    action: str,
    obj: models.Model | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
    bank_id: int | None = None,
    object_type: str = "",
    object_id: str = "",
) -> AuditLog:
    """Appends one audit row. `actor` None means the system (a job or a migration); an `AuditActor` (an API key) is
    recorded by its label, with no user."""
    if isinstance(actor, AuditActor):
        user, label = None, actor.audit_label
    else:
        user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
        label = user.get_username() if user is not None else SYSTEM_ACTOR
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    return AuditLog.objects.create(
        actor=user,  # type: ignore[misc]
        actor_label=label[:150],
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=redact(str(obj))[:200] if obj is not None else "",
        before=before,
        after=after,
        reason=reason,
        request_id=get_request_id() if get_request_id() != "-" else "",
        bank_id=bank_id,
    )
