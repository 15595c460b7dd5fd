"""Holds: points reserved, then posted (wholly or in part, the rest released) or voided; a hold resolves once.

A hold lowers what is available (posted − held) at once; its points are spent only when it posts. Posting and voiding
lock the wallet, then the hold, and refuse a hold that is no longer pending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import Conflict, InsufficientFunds, NotFound, ValidationFailed
from members.models import PointsProgram

from ..models import Account, Hold, LedgerTransaction, Purpose
from .accounts import bank_ref, wallet_bank_ref, wallet_ref
from .expiry import expire_overdue
from .lots import consume_lots
from .posting import (
    Actor,
    Kind,
    begin,
    finish,
    keyed,
    lock_accounts,
    locked_refs,
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
    wallet_named, breakage_named = (
        wallet_ref(cardholder_id, program),
        bank_ref(program, Purpose.BREAKAGE, cardholder_id),
    )

    def hold() -> Hold:
        wallet, breakage = locked_refs(wallet_named, breakage_named)
        created = Hold.objects.create(  # takes the key: a second caller with it replays (`keyed`)
            account=wallet,
            amount=amount,
            idempotency_key=idempotency_key,
            request_hash=digest,
            expires_at=expires_at,
            metadata={**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk},
        )
        expire_overdue(wallet, breakage)
        if wallet.available < amount:
            raise InsufficientFunds(
                _("Not enough points: %(available)d available, %(needed)d needed.")
                % {"available": max(wallet.available, 0), "needed": amount},
                param="amount",
            )
        Account.objects.filter(pk=wallet.pk, spread=wallet.spread).update(
            held=F("held") + amount, version=F("version") + 1
        )
        return created

    return keyed(Hold, idempotency_key, digest, hold)


def _hold_wallet(hold_id: int) -> Hold:
    hold = Hold.objects.select_related("account").filter(pk=hold_id).first()
    if hold is None:
        raise NotFound(_("No such hold."), param="hold")
    return hold


def _refuse_unless_pending(hold: Hold, now: dt.datetime) -> None:
    if hold.status != Hold.Status.PENDING:
        raise Conflict(_("This hold is already %(status)s.") % {"status": hold.get_status_display()})
    if hold.expires_at <= now:
        raise Conflict(_("This hold expired at %(time)s.") % {"time": hold.expires_at.isoformat()}, code="hold_expired")


@retry_on_conflict
def hold_post(
    *, hold_id: int, idempotency_key: str, amount: int | None = None, actor: Actor = None
) -> LedgerTransaction:
    """Spends `amount` (default: all) of a pending hold and releases the rest. A hold posts at most once, and not
    after its `expires_at` (the sweep releases it)."""
    if amount is not None:
        require_positive(amount)
    hold = _hold_wallet(hold_id)  # the wallet and the amount never change; the status is read again under the lock
    wallet = hold.account
    to_post = hold.amount if amount is None else amount
    digest = request_hash(op="hold_post", hold=hold_id, amount=to_post)
    if to_post > hold.amount:
        raise ValidationFailed(_("Cannot post more than the hold."), param="amount")
    sink_named = wallet_bank_ref(wallet, Purpose.REDEMPTION)

    def post() -> LedgerTransaction:
        posting = begin(
            kind=Kind.HOLD_POST,
            key=idempotency_key,
            digest=digest,
            refs=[sink_named],
            account_ids=[wallet.pk],
            actor=actor,
            metadata={"cardholder_id": wallet.owner_id, "program_id": wallet.program_id, "hold_id": hold_id},
            points=to_post,
        )
        locked_hold = Hold.objects.select_for_update().get(pk=hold_id)
        _refuse_unless_pending(locked_hold, timezone.now())
        account = posting.acc(wallet)
        posting.held_changes[account.pk] = -locked_hold.amount
        consume_lots(posting, account, to_post)
        posting.leg(account, -to_post)
        posting.leg(posting.account(sink_named), to_post)
        txn = finish(posting)
        Hold.objects.filter(pk=hold_id).update(
            status=Hold.Status.POSTED,
            posted_amount=to_post,
            transaction=txn,
            transaction_created_at=txn.created_at,
            resolved_at=timezone.now(),
        )
        return txn

    return keyed(LedgerTransaction, idempotency_key, digest, post)


@retry_on_conflict
def hold_void(*, hold_id: int, expired: bool = False) -> Hold:
    """Releases a pending hold. Voiding a voided hold is a no-op; a posted hold cannot be voided."""
    wallet = _hold_wallet(hold_id).account
    with transaction.atomic():
        lock_accounts([], [wallet.pk])
        hold = Hold.objects.select_for_update().get(pk=hold_id)
        target = Hold.Status.EXPIRED if expired else Hold.Status.VOIDED
        if hold.status in (Hold.Status.VOIDED, Hold.Status.EXPIRED):
            return hold
        if hold.status != Hold.Status.PENDING:
            raise Conflict(_("This hold is already %(status)s.") % {"status": hold.get_status_display()})
        Account.objects.filter(pk=wallet.pk, spread=wallet.spread).update(
            held=F("held") - hold.amount, version=F("version") + 1
        )
        hold.status, hold.resolved_at = target, timezone.now()
        hold.save(update_fields=["status", "resolved_at"])
        return hold


HOLDS_EXPIRE_CHUNK = 500  # wallets per database transaction

# The wallets with pending holds past their time, next after `after`; `lock_accounts` then locks them in id order
# like every posting's accounts (on Citus, shard by shard).
SQL_DUE_WALLETS = """
    SELECT DISTINCT h.account_id FROM rewards_hold h
    WHERE h.status = 'pending' AND h.expires_at <= %(now)s AND h.account_id > %(after)s
    ORDER BY h.account_id LIMIT %(chunk)s
"""

# Under those locks, in one statement: every pending hold of theirs still due expires and its wallet releases it.
# A hold that another transaction posted or voided meanwhile is no longer pending and is skipped.
SQL_EXPIRE_DUE = """
    WITH expired AS (
        UPDATE rewards_hold h SET status = 'expired', resolved_at = %(now)s
        WHERE h.account_id = ANY(%(wallets)s) AND h.status = 'pending' AND h.expires_at <= %(now)s
        RETURNING h.account_id, h.amount
    ), released AS (
        UPDATE rewards_account a SET held = a.held - e.total, version = a.version + 1
        FROM (SELECT account_id, SUM(amount) AS total FROM expired GROUP BY account_id) e WHERE a.id = e.account_id
    )
    SELECT COUNT(*) FROM expired
"""


@retry_on_conflict
def _expire_due_chunk(now: dt.datetime, after: int, chunk: int) -> tuple[list[int], int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SQL_DUE_WALLETS, {"now": now, "after": after, "chunk": chunk})
        wallets = [row[0] for row in cursor.fetchall()]
        if not wallets:
            return [], 0
        lock_accounts([], wallets)
        cursor.execute(SQL_EXPIRE_DUE, {"now": now, "wallets": wallets})
        return wallets, int(cursor.fetchone()[0])


def holds_expire(
    *,
    now: dt.datetime | None = None,
    chunk: int = HOLDS_EXPIRE_CHUNK,
    progress: Callable[..., None] | None = None,
) -> int:
    """Expires every pending hold past its time, set-based, `chunk` wallets per database transaction (reported to
    `progress(wallets, expired=…)`); returns how many. A hold another transaction resolves meanwhile is skipped.
    Safe to run twice and to kill at any point: a chunk commits whole or not at all."""
    now = now or timezone.now()
    expired = 0
    after = 0
    while True:
        wallets, count = _expire_due_chunk(now, after, chunk)
        if not wallets:
            return expired
        expired += count
        if progress is not None:
            progress(len(wallets), expired=count)
        if len(wallets) < chunk:
            return expired
        after = wallets[-1]
