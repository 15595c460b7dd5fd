"""Holds: points reserved, then posted (wholly or in part, the rest released) or voided; a hold resolves once.

A hold lowers what is available (posted − held) at once; its points are spent only when it posts. Posting and voiding
lock the wallet, then the hold, and refuse a hold that is no longer pending.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import Conflict, InsufficientFunds, NotFound, ValidationFailed
from members.models import PointsProgram

from ..models import Account, Hold, LedgerTransaction, Purpose
from .accounts import bank_points_account, wallet_account
from .expiry import expire_overdue
from .lots import consume_lots
from .posting import (
    Actor,
    Kind,
    Posting,
    begin,
    finish,
    lock_accounts,
    replay,
    request_hash,
    require_positive,
    retry_on_conflict,
)


@retry_on_conflict
def hold_create(
    *,
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    idempotency_key: str,
    expires_at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> Hold:
    """Reserves points: available = posted − held drops at once; the points are spent only when the hold posts."""
    require_positive(amount)
    expires_at = expires_at or timezone.now() + dt.timedelta(seconds=settings.LEDGER_HOLD_TTL_SECONDS)
    digest = request_hash(op="hold", cardholder=cardholder_id, program=program.pk, amount=amount)
    with transaction.atomic():
        existing = replay(Hold, idempotency_key, digest)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        wallet = wallet_account(cardholder_id, program)
        expire_overdue(wallet)
        locked = lock_accounts([wallet])[wallet.pk]
        if locked.available < amount:
            raise InsufficientFunds(
                _("Not enough points: %(available)d available, %(needed)d needed.")
                % {"available": max(locked.available, 0), "needed": amount},
                param="amount",
            )
        Account.objects.filter(pk=wallet.pk).update(held=F("held") + amount, version=F("version") + 1)
        return Hold.objects.create(
            account=wallet,
            amount=amount,
            idempotency_key=idempotency_key,
            request_hash=digest,
            expires_at=expires_at,
            metadata={**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk},
        )


def _locked_hold(hold_id: int, *also: Account) -> tuple[Account, Hold]:
    """Locks the hold's wallet (with `also`, in id order), then the hold."""
    account_id = Hold.objects.filter(pk=hold_id).values_list("account_id", flat=True).first()
    if account_id is None:
        raise NotFound(_("No such hold."), param="hold")
    wallet = Account.objects.get(pk=account_id)
    account = lock_accounts([wallet, *also])[account_id]
    hold = Hold.objects.select_for_update().get(pk=hold_id)
    return account, hold


@retry_on_conflict
def hold_post(
    *, hold_id: int, idempotency_key: str, amount: int | None = None, actor: Actor = None
) -> LedgerTransaction:
    """Spends `amount` (default: all) of a pending hold and releases the rest. A hold posts at most once."""
    if amount is not None:
        require_positive(amount)
    with transaction.atomic():
        wallet = Account.objects.filter(holds__pk=hold_id).first()
        if wallet is None:
            raise NotFound(_("No such hold."), param="hold")
        program = PointsProgram.objects.get(pk=wallet.program_id or 0)
        cardholder_id = wallet.owner_id
        sink = bank_points_account(program, Purpose.REDEMPTION, cardholder_id)
        account, hold = _locked_hold(hold_id, sink)
        digest = request_hash(op="hold_post", hold=hold_id, amount=amount if amount is not None else hold.amount)
        existing = replay(LedgerTransaction, idempotency_key, digest)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        if hold.status != Hold.Status.PENDING:
            raise Conflict(_("This hold is already %(status)s.") % {"status": hold.get_status_display()})
        to_post = hold.amount if amount is None else amount
        if to_post > hold.amount:
            raise ValidationFailed(_("Cannot post more than the hold."), param="amount")
        posting = begin(
            kind=Kind.HOLD_POST,
            key=idempotency_key,
            digest=digest,
            accounts=[account, sink],
            actor=actor,
            metadata={"cardholder_id": cardholder_id, "program_id": program.pk, "hold_id": hold.pk},
            points=to_post,
        )
        assert isinstance(posting, Posting)
        posting.held_changes[account.pk] = -hold.amount
        consume_lots(posting, account, to_post)
        posting.leg(account, -to_post)
        posting.leg(sink, to_post)
        txn = finish(posting)
        Hold.objects.filter(pk=hold.pk).update(
            status=Hold.Status.POSTED, posted_amount=to_post, transaction=txn, resolved_at=timezone.now()
        )
        return txn


@retry_on_conflict
def hold_void(*, hold_id: int, expired: bool = False) -> Hold:
    """Releases a pending hold. Voiding a voided hold is a no-op; a posted hold cannot be voided."""
    with transaction.atomic():
        account, hold = _locked_hold(hold_id)
        target = Hold.Status.EXPIRED if expired else Hold.Status.VOIDED
        if hold.status in (Hold.Status.VOIDED, Hold.Status.EXPIRED):
            return hold
        if hold.status != Hold.Status.PENDING:
            raise Conflict(_("This hold is already %(status)s.") % {"status": hold.get_status_display()})
        Account.objects.filter(pk=account.pk).update(held=F("held") - hold.amount, version=F("version") + 1)
        hold.status, hold.resolved_at = target, timezone.now()
        hold.save(update_fields=["status", "resolved_at"])
        return hold


def holds_expire(*, now: dt.datetime | None = None) -> int:
    """Voids every pending hold past its time; returns how many."""
    now = now or timezone.now()
    ids = list(Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lte=now).values_list("pk", flat=True))
    expired = 0
    for hold_id in ids:
        if hold_void(hold_id=hold_id, expired=True).status == Hold.Status.EXPIRED:
            expired += 1
    return expired
