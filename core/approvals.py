"""Maker-checker, one mechanism for every money-affecting operator action.

An operator (the maker) requests a change of a registered kind, with its payload and a reason. A second operator (the
checker) approves it, and the kind's own service applies the payload in the same transaction as the approval, or
rejects it with a reason; the maker may cancel it while it waits, and a beat job expires it once it has waited too long
(`APPROVAL_EXPIRY_HOURS`). Every step writes an audit row.

The checker:
- is not the maker;
- holds the kind's permission (`ApprovalKind.permission`, an "app_label.codename");
- operates for the request's bank (a bank auditor may not check), or is an alliance operator, where the kind allows it
  (`alliance_may_check`); a request without a bank is checked by an alliance operator only.

A decision is one guarded UPDATE (`... WHERE status = 'pending' AND expires_at > now()`): of two checkers deciding at
once, one wins and the other is told the request was already decided. When applying fails, the approval rolls back with
it and the error reaches the checker; the request stays pending.

Apps register their kinds in their AppConfig's `ready()`, so this module imports no domain code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _

from .audit import audit_record
from .errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from .models import ApprovalRequest
from .scoping import operator_scope

Payload = dict[str, Any]
User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class ApprovalKind:
    """What a feature registers for one kind of request.

    - `validate(payload) -> payload`: checks the payload (raising `ValidationFailed`, `NotFound`, ...) and returns it
      normalised and JSON-safe; run when requested and again when approved, before applying;
    - `bank_of(payload) -> bank id | None`: the bank whose operator must check (None: an alliance operator);
    - `apply(payload, maker, checker) -> model instance | None`: makes the change through the feature's own service,
      inside the approval's transaction; what it returns is recorded as the request's result;
    - `describe(payload) -> [(label, value)]`: the payload as the queue shows it.
    """

    code: str
    label: str | Promise
    permission: str
    validate: Callable[[Payload], Payload]
    bank_of: Callable[[Payload], int | None]
    apply: Callable[[Payload, AbstractBaseUser, AbstractBaseUser], models.Model | None]
    describe: Callable[[Payload], list[tuple[str, str]]]
    alliance_may_check: bool = True


_kinds: dict[str, ApprovalKind] = {}


def approval_kind_register(kind: ApprovalKind) -> None:
    existing = _kinds.get(kind.code)
    if existing is not None and existing != kind:
        raise ValueError(f"Approval kind {kind.code!r} is registered twice.")
    _kinds[kind.code] = kind


def approval_kind(code: str) -> ApprovalKind:
    try:
        return _kinds[code]
    except KeyError:
        raise NotFound(_("No such kind of approval request."), param="kind") from None


def approval_kinds() -> list[ApprovalKind]:
    return sorted(_kinds.values(), key=lambda kind: kind.code)


def expiry_hours(code: str) -> int:
    """`APPROVAL_EXPIRY_HOURS` maps a kind's code (or "default") to the hours a request of it may wait."""
    hours: dict[str, int] = settings.APPROVAL_EXPIRY_HOURS
    return int(hours.get(code, hours["default"]))


def _json_safe(payload: Payload) -> Payload:
    return dict(json.loads(json.dumps(payload, cls=DjangoJSONEncoder)))


# --- who may check -------------------------------------------------------------------------------------------------


def checker_refusal(request: ApprovalRequest, user: User) -> str | None:
    """Why `user` may not decide `request` (a sentence to show), or None when they may."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return _("Sign in to decide approval requests.")
    if request.maker_id == user.pk:
        return _("A second operator must decide this request: you made it.")
    kind = approval_kind(request.kind)
    if not user.has_perm(kind.permission):  # type: ignore[union-attr]
        return _("Your role may not decide requests of this kind.")
    scope = operator_scope(user)
    if scope.everything:
        if request.bank_id is None or kind.alliance_may_check:
            return None
        return _("An operator of the bank concerned must decide this request.")
    if request.bank_id is None:
        return _("An alliance operator must decide this request.")
    if request.bank_id not in scope.writable_bank_ids:
        return _("An operator of the bank concerned must decide this request.")
    return None


def approvals_waiting_for(user: User) -> models.QuerySet[ApprovalRequest]:
    """The pending, unexpired requests `user` may decide (never their own)."""
    none = ApprovalRequest.objects.none()
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return none
    kinds = [kind for kind in approval_kinds() if user.has_perm(kind.permission)]  # type: ignore[union-attr]
    if not kinds:
        return none
    scope = operator_scope(user)
    if scope.everything:
        anywhere = [kind.code for kind in kinds if kind.alliance_may_check]
        condition = Q(kind__in=anywhere) | Q(bank_id__isnull=True, kind__in=[kind.code for kind in kinds])
    else:
        condition = Q(kind__in=[kind.code for kind in kinds], bank_id__in=scope.writable_bank_ids)
    return (
        ApprovalRequest.objects.filter(condition, status=ApprovalRequest.Status.PENDING, expires_at__gt=timezone.now())
        .exclude(maker_id=user.pk)
        .order_by("expires_at", "id")
    )


def approvals_made_by(user: User) -> models.QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(maker_id=user.pk).order_by("-id")


def approval_describe(request: ApprovalRequest) -> list[tuple[str, str]]:
    """The payload as rows of (label, value); a kind no longer registered shows its raw fields."""
    kind = _kinds.get(request.kind)
    if kind is None:
        return [(str(key), str(value)) for key, value in request.payload.items()]
    return kind.describe(request.payload)


def approval_kind_label(code: str) -> str:
    kind = _kinds.get(code)
    return str(kind.label) if kind is not None else code


# --- the steps -----------------------------------------------------------------------------------------------------


def _audit(request: ApprovalRequest, actor: User | None, step: str, reason: str = "", **after: Any) -> None:
    audit_record(
        actor=actor,
        action=f"approval.{step}",
        obj=request,
        after={"kind": request.kind, "status": request.status, **after},
        reason=reason,
        bank_id=request.bank_id,
    )


@transaction.atomic
def approval_request(*, kind: str, payload: Payload, reason: str, maker: AbstractBaseUser) -> ApprovalRequest:
    """Records a request; nothing changes until a second operator approves it."""
    registered = approval_kind(kind)
    if not reason.strip():
        raise ValidationFailed(_("Give a reason for the request."), param="reason")
    payload = _json_safe(registered.validate(payload))
    request = ApprovalRequest.objects.create(
        kind=kind,
        payload=payload,
        reason=reason.strip(),
        bank_id=registered.bank_of(payload),
        permission=registered.permission,
        maker=maker,  # type: ignore[misc]
        expires_at=timezone.now() + timedelta(hours=expiry_hours(kind)),
    )
    _audit(request, maker, "request", request.reason, payload=payload)
    return request


def _pending(request_id: int) -> ApprovalRequest:
    request = ApprovalRequest.objects.filter(pk=request_id).first()
    if request is None:
        raise NotFound(_("No such approval request."), param="request")
    if request.status != ApprovalRequest.Status.PENDING:
        raise Conflict(_("This request was already decided."), code="approval_decided")
    return request


def _claim(request: ApprovalRequest, status: str, checker: User, reason: str) -> ApprovalRequest:
    """The guarded UPDATE: only a pending, unexpired request changes; a second checker finds it decided."""
    now = timezone.now()
    claimed = ApprovalRequest.objects.filter(
        pk=request.pk, status=ApprovalRequest.Status.PENDING, expires_at__gt=now
    ).update(status=status, checker_id=checker.pk, decided_at=now, decision_reason=reason)
    if not claimed:
        current = ApprovalRequest.objects.get(pk=request.pk)
        if current.status == ApprovalRequest.Status.PENDING:
            raise Conflict(_("This request has expired."), code="approval_expired")
        raise Conflict(_("This request was already decided."), code="approval_decided")
    request.refresh_from_db()
    return request


def approval_approve(*, request_id: int, checker: AbstractBaseUser) -> ApprovalRequest:
    """The checker approves: in one transaction, the request is claimed and the kind applies its payload. Whatever
    fails undoes both and is raised; the request is then still pending."""
    request = _pending(request_id)
    refusal = checker_refusal(request, checker)
    if refusal is not None:
        raise PermissionDenied(refusal)
    kind = approval_kind(request.kind)
    with transaction.atomic():
        request = _claim(request, ApprovalRequest.Status.APPROVED, checker, "")
        maker = request.maker
        result = kind.apply(kind.validate(request.payload), maker, checker)
        if result is not None:
            request.result_type, request.result_id = result._meta.label_lower, str(result.pk)
            request.save(update_fields=["result_type", "result_id"])
        _audit(request, checker, "approve", request.reason, result=f"{request.result_type}#{request.result_id}")
    return request


@transaction.atomic
def approval_reject(*, request_id: int, checker: AbstractBaseUser, reason: str) -> ApprovalRequest:
    if not reason.strip():
        raise ValidationFailed(_("Say why you reject the request."), param="reason")
    request = _pending(request_id)
    refusal = checker_refusal(request, checker)
    if refusal is not None:
        raise PermissionDenied(refusal)
    request = _claim(request, ApprovalRequest.Status.REJECTED, checker, reason.strip())
    _audit(request, checker, "reject", request.decision_reason)
    return request


@transaction.atomic
def approval_cancel(*, request_id: int, maker: AbstractBaseUser) -> ApprovalRequest:
    """The maker withdraws a request that still waits."""
    request = _pending(request_id)
    if request.maker_id != maker.pk:
        raise PermissionDenied(_("Only the operator who made a request may cancel it."))
    cancelled = ApprovalRequest.objects.filter(pk=request.pk, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.CANCELLED, decided_at=timezone.now()
    )
    if not cancelled:
        raise Conflict(_("This request was already decided."), code="approval_decided")
    request.refresh_from_db()
    _audit(request, maker, "cancel")
    return request


EXPIRY_CHUNK = 500


def approvals_expire(*, now: Any = None, on_batch: Callable[[int], None] | None = None) -> int:
    """Marks expired every pending request past its expiry, a chunk per transaction, with an audit row each. Safe to run
    twice or to stop at any point: a request is expired by one guarded UPDATE and audited in the same transaction."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            stale = list(
                ApprovalRequest.objects.select_for_update(skip_locked=True)
                .filter(status=ApprovalRequest.Status.PENDING, expires_at__lte=now)
                .order_by("id")[:EXPIRY_CHUNK]
            )
            if not stale:
                return total
            ApprovalRequest.objects.filter(pk__in=[r.pk for r in stale]).update(
                status=ApprovalRequest.Status.EXPIRED, decided_at=now
            )
            for request in stale:
                request.status, request.decided_at = ApprovalRequest.Status.EXPIRED, now
                _audit(request, None, "expire")
        total += len(stale)
        if on_batch is not None:
            on_batch(len(stale))
