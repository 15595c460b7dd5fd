"""Writing the audit log: one helper for services, used by the scoped admin for every change too."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .logging import redact
from .models import AuditLog
from .requestid import get_request_id
from .scoping import operator_scope

SYSTEM_ACTOR = "system"


@runtime_checkable
class AuditActor(Protocol):
    """Someone acting who is not a user — a merchant's API key — recorded by the label it gives itself."""

    @property
    def audit_label(self) -> str: ...


# Kept out of every snapshot whatever the model declares: what is stored encrypted or hashed, fingerprints, tokens,
# secrets and passwords. A model names its other sensitive columns (a masked name, a payment code) in `AUDIT_REDACT`.
REDACTED = "[redacted]"
_SENSITIVE_NAME = re.compile(
    r"(^|_)(encrypted|hash|digest|fingerprint|token|secret|password)(_|$)|^secret|^otp", re.IGNORECASE
)


def audit_redacted(instance: models.Model, name: str) -> bool:
    """Whether a snapshot of `instance` names the field `name` without copying its value: default-deny by name
    pattern, plus the model's own `AUDIT_REDACT` (and the older `AUDIT_EXCLUDE`)."""
    declared = (*getattr(instance, "AUDIT_REDACT", ()), *getattr(instance, "AUDIT_EXCLUDE", ()))
    return name in declared or bool(_SENSITIVE_NAME.search(name))


def snapshot(instance: models.Model) -> dict[str, Any]:
    """A JSON-safe picture of a row for before/after. A sensitive field (personal data, a secret, an encrypted or
    hashed value, a fingerprint, a token: see `audit_redacted`) is named with the value "[redacted]", or left empty
    when it is empty, so the row shows which fields it has and whether they are set, never what they hold."""
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        value = field.value_from_object(instance)
        if audit_redacted(instance, field.name) or audit_redacted(instance, field.attname):
            value = REDACTED if value not in (None, "") else value
        data[field.attname] = value
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
    object_banks: Collection[int] = (),
) -> AuditLog:
    """Appends one audit row. `actor` None means the system (a job or a migration); an `AuditActor` (an API key) is
    recorded by its label, with no user.

    The row's bank is `bank_id` when given; otherwise the one bank of `object_banks` (the banks the object belongs to)
    or, failing that, the acting bank operator's bank (see `acting_bank`)."""
    if isinstance(actor, AuditActor):
        user, label = None, actor.audit_label
    else:
        user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
        label = user.get_username() if user is not None else SYSTEM_ACTOR
    if bank_id is None:
        bank_id = next(iter(object_banks)) if len(object_banks) == 1 else acting_bank(user, object_banks)
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


def acting_bank(user: AbstractBaseUser | AnonymousUser | None, object_banks: Collection[int] = ()) -> int | None:
    """The bank a bank operator acted for, when the row has no single bank of its own (a cardholder with cards at two
    banks, a sign-in lockout lifted on a cardholder's account): the one bank of the object's that the operator works
    for (operates first, then audits), or their one bank when the object names none. None for alliance operators, for
    anyone who is not staff (cardholders, whose scope is never looked up) and when it stays ambiguous."""
    if user is None or not getattr(user, "is_staff", False):
        return None
    scope = operator_scope(user)
    if scope.everything:
        return None
    for banks in (scope.writable_bank_ids, scope.bank_ids):
        candidates = banks & set(object_banks) if object_banks else banks
        if len(candidates) == 1:
            return next(iter(candidates))
    return None
