"""Expiry: the points of a lot past its last valid day go to the programme's breakage account.

One implementation, set-based (`expire_wallets`): for a batch of wallets, locked with their breakage accounts in id
order, one statement reads the overdue lots under the locks and writes the whole batch — one transaction per wallet
(`INSERT … SELECT`) with its idempotency key's row, the lot movements, the lots (`UPDATE … FROM`), the entries and
the balances. Points that are held
stay until their hold resolves: held points count as taken from the soonest-expiring lots, so of a wallet's overdue
points the held ones stay (the next run takes them) and valid lots are never touched.

The daily job (`lots_expire`) runs it over every wallet with overdue lots, in chunks of `EXPIRY_CHUNK` wallets, each
chunk one database transaction: safe to run twice (the second run finds nothing overdue) and to kill at any point (a
chunk commits whole or not at all; the next run carries on). A spend or a hold runs it for its own wallet, under its
own locks, before it takes any point (`expire_overdue`), so points past their day are never spendable, even before
the job has run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import Subquery
from django.utils import timezone

from ..models import Account, Lot, Purpose
from .accounts import AccountRef, wallet_bank_ref
from .lots import open_lots, today
from .posting import lock_accounts, retry_on_conflict

EXPIRY_CHUNK = 500  # wallets per database transaction

# Under the locks: how many points each wallet (paired with its breakage account) loses — its overdue points less
# what is held, never more than is available —, which lots they come from (soonest expiry first), and every row the
# postings write.
SQL_EXPIRE = """
    WITH wallet AS (
        SELECT w.id, w.owner_id, w.program_id, w.unit, w.posted, w.held, w.version, w.spread, d.breakage_id
        FROM rewards_account w
        JOIN unnest(%(wallets)s::bigint[], %(breakages)s::bigint[]) AS d(id, breakage_id) ON d.id = w.id
    ), overdue AS (
        SELECT l.id, l.account_id, l.remaining,
               SUM(l.remaining) OVER (PARTITION BY l.account_id ORDER BY l.expires_on, l.id) AS through
        FROM rewards_lot l JOIN wallet w ON w.id = l.account_id
        WHERE l.remaining > 0 AND l.expires_on < %(on)s
    ), budget AS (
        SELECT w.*, LEAST(GREATEST(o.total - w.held, 0), GREATEST(w.posted - w.held, 0)) AS points,
               'expire:' || w.id || ':' || %(day)s || ':' || w.version AS key
        FROM wallet w JOIN (SELECT account_id, SUM(remaining) AS total FROM overdue GROUP BY account_id) o
          ON o.account_id = w.id
    ), taken AS (
        SELECT o.id AS lot_id, o.account_id, LEAST(o.remaining, b.points - (o.through - o.remaining)) AS amount
        FROM overdue o JOIN budget b ON b.id = o.account_id
        WHERE b.points > o.through - o.remaining
    ), txn AS (
        INSERT INTO rewards_ledgertransaction
            (kind, idempotency_key, request_hash, points, reversed_points, metadata, actor_label, entry_count,
             created_at)
        SELECT 'expire', b.key, encode(sha256(convert_to(b.key, 'UTF8')), 'hex'), b.points, 0,
               jsonb_build_object('cardholder_id', b.owner_id, 'program_id', b.program_id, 'on', %(day)s),
               'system', 2, %(now)s
        FROM budget b WHERE b.points > 0 ORDER BY b.id
        RETURNING id, idempotency_key
    ), keys AS (
        INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)
        SELECT idempotency_key, id, %(now)s FROM txn
    ), posted AS (
        SELECT t.id AS txn_id, b.id AS wallet_id, b.spread AS wallet_spread, b.breakage_id, b.unit, b.points,
               b.posted AS wallet_before
        FROM txn t JOIN budget b ON b.key = t.idempotency_key
    ), moved AS (
        INSERT INTO rewards_lotmovement (transaction_id, transaction_created_at, lot_id, amount)
        SELECT p.txn_id, %(now)s, k.lot_id, -k.amount FROM taken k JOIN posted p ON p.wallet_id = k.account_id
        ORDER BY p.txn_id, k.lot_id
    ), lots AS (
        UPDATE rewards_lot l SET remaining = l.remaining - k.amount FROM taken k WHERE l.id = k.lot_id
    ), legs AS (  -- two per transaction, its entry count
        SELECT p.txn_id, p.wallet_id AS account_id, p.wallet_spread AS spread, p.unit, -p.points AS amount,
               p.wallet_before - p.points AS balance_after, 0 AS side
        FROM posted p
        UNION ALL
        SELECT p.txn_id, p.breakage_id, a.spread, p.unit, p.points,
               a.posted + SUM(p.points) OVER (PARTITION BY p.breakage_id ORDER BY p.txn_id), 1
        FROM posted p JOIN rewards_account a ON a.id = p.breakage_id
    ), entries AS (
        INSERT INTO rewards_entry (transaction_id, account_id, spread, unit, amount, balance_after, created_at)
        SELECT txn_id, account_id, spread, unit, amount, balance_after, %(now)s FROM legs ORDER BY txn_id, side
    ), balances AS (
        UPDATE rewards_account a SET posted = a.posted + d.delta, version = a.version + 1
        FROM (SELECT account_id, SUM(amount) AS delta FROM legs GROUP BY account_id) d WHERE a.id = d.account_id
    )
    SELECT COUNT(*), COALESCE(SUM(points), 0) FROM posted
"""


def expire_wallets(wallets: list[Account], on: dt.date) -> tuple[int, int]:
    """Expires the overdue lots of `wallets` (in the caller's transaction): one ledger transaction per wallet that
    loses points. Returns (wallets, points). The wallets and their breakage accounts (created if missing) are locked
    by `lock_accounts`, in the one order every posting takes; every read of lots and balances is under the locks.
    The transaction's key names the wallet's version, so it cannot collide: a wallet's next expiry comes after it
    changed."""
    if not wallets:
        return 0, 0
    breakage = {wallet.pk: wallet_bank_ref(wallet, Purpose.BREAKAGE) for wallet in wallets}
    locked = lock_accounts(breakage.values(), breakage)
    breakage_ids = {AccountRef.identity_of(account): pk for pk, account in locked.items()}
    params: dict[str, Any] = {
        "wallets": list(breakage),
        "breakages": [breakage_ids[ref.identity] for ref in breakage.values()],
        "on": on,
        "day": on.isoformat(),
        "now": timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(SQL_EXPIRE, params)
        expired, points = cursor.fetchone()
    return int(expired), int(points)


@retry_on_conflict
def _expire_chunk(wallets: list[Account], on: dt.date) -> tuple[int, int]:
    with transaction.atomic():
        return expire_wallets(wallets, on)


def lots_expire(
    *,
    on: dt.date | None = None,
    chunk: int = EXPIRY_CHUNK,
    progress: Callable[..., None] | None = None,
) -> dict[str, int]:
    """Expires every lot whose last valid day is before `on`, `chunk` wallets per database transaction; reports each
    chunk to `progress(wallets, accounts=…, points=…)` (a job run's `advance`). Points that are held stay until their
    hold resolves (the next run takes them)."""
    on = on or today()
    counts = {"accounts": 0, "points": 0}
    after = 0
    while True:
        due = (
            Lot.objects.filter(remaining__gt=0, expires_on__lt=on, account_id__gt=after)
            .order_by("account_id")
            .values("account_id")
            .distinct()[:chunk]
        )
        wallets = list(Account.objects.filter(pk__in=Subquery(due)).order_by("pk"))
        if not wallets:
            return counts
        expired, points = _expire_chunk(wallets, on)
        counts["accounts"] += expired
        counts["points"] += points
        if progress is not None:
            progress(len(wallets), accounts=expired, points=points)
        if len(wallets) < chunk:
            return counts
        after = wallets[-1].pk


def expire_overdue(wallet: Account, breakage: Account) -> list[Lot]:
    """Before a spend or a hold takes points from the locked `wallet`: expires its overdue lots (into the locked
    `breakage`), exactly as the job would, and returns its open lots, read under the lock. Nothing more is read when
    nothing is overdue; otherwise the two accounts' balances are read again."""
    day = today()
    lots = open_lots(wallet)
    if not any(lot.expires_on < day for lot in lots):
        return lots
    expired, _points = expire_wallets([wallet], day)
    if not expired:
        return lots
    fresh = Account.objects.filter(pk__in=[wallet.pk, breakage.pk]).values_list("pk", "posted", "held", "version")
    for pk, posted, held, version in fresh:
        account = wallet if pk == wallet.pk else breakage
        account.posted, account.held, account.version = posted, held, version
    return open_lots(wallet)
