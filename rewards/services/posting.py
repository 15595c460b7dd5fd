"""The machinery every posting uses: the key, the transaction row, the locks, the entries, the retry.

Every posting runs inside `keyed` (one database transaction, or one savepoint in a caller's) and, in this order:
(1) inserts its key's row (`LedgerKey`, unique across every month of the partitioned transactions), which takes
its idempotency key, and then its transaction row (a hold's row takes a hold's key, after the wallet's lock): a second
caller with the key fails on the unique index, at once or once the first commits, rolls back
everything it did and returns the first result, or `IdempotencyConflict` when its parameters differ — so no read
precedes the insert and a replay posts nothing at all; (2) locks every account it touches in one
`SELECT … FOR UPDATE ORDER BY id` (`lock_accounts`, creating missing accounts first), then the hold or the reversed
transaction it works on, then reads and changes lots (only ever under their wallet's lock) — always in that order,
so postings never deadlock on each other; (3) writes the transaction's entry count, every balance in one `UPDATE` and
the entries in one `INSERT`, zero-sum per unit, each carrying the account's running balance. Deadlocks and
serialization failures are retried from the start; `InsufficientFunds` is raised only for a real shortfall, and
nothing it did is kept. See docs/ledger.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import BigIntegerField, Func, Model, Q, Value
from django.utils import timezone
from django.utils.translation import gettext as _

from core.calendar import SHANGHAI
from core.errors import IdempotencyConflict, InsufficientFunds, ValidationFailed

from ..models import Account, Entry, LedgerKey, LedgerTransaction
from .accounts import AccountRef, Identity, creation_locks

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
M = TypeVar("M", bound=Model)
Actor = AbstractBaseUser | AnonymousUser | None
Kind = LedgerTransaction.Kind


_RETRYABLE_PGCODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_MAX_ATTEMPTS = 8


def retry_on_conflict(func: Callable[P, R]) -> Callable[P, R]:
    """Runs `func` again after a deadlock or serialization failure (only when it owns the outermost transaction)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if connection.in_atomic_block:
            return func(*args, **kwargs)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                code = getattr(exc.__cause__, "pgcode", None)
                if code not in _RETRYABLE_PGCODES or attempt == _MAX_ATTEMPTS - 1:
                    raise
                time.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper


def request_hash(**params: Any) -> str:
    canonical = json.dumps(params, sort_keys=True, cls=DjangoJSONEncoder, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _actor_fields(actor: Actor) -> dict[str, Any]:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return {"actor": actor, "actor_label": actor.get_username()}
    return {"actor": None, "actor_label": "system"}


def _key_reused() -> IdempotencyConflict:
    return IdempotencyConflict(
        _("This idempotency key was already used with different parameters."), param="idempotency_key"
    )


def check_key(key: str) -> None:
    if not key or len(key) > 200:
        raise ValidationFailed(_("An idempotency key of 1 to 200 characters is required."), param="idempotency_key")


def replay(model: type[M], key: str, digest: str) -> M | None:
    """The row that first took `key` (a ledger transaction or a hold), or None; `IdempotencyConflict` when it was
    taken with other parameters. A transaction's key is looked up in `LedgerKey`, then the transaction is read in its
    month's partition; a key whose transaction's month was archived is refused (`idempotency_key_archived`)."""
    existing: Any
    if model is LedgerTransaction:
        taken = LedgerKey.objects.filter(idempotency_key=key).first()
        if taken is None:
            return None
        existing = LedgerTransaction.objects.one(taken.transaction_id, taken.transaction_created_at).first()
        if existing is None:  # its month went to an archive: the key's row stays, and refuses the key
            raise IdempotencyConflict(
                _(
                    "This idempotency key was taken by a ledger transaction of %(month)s, a month that has been"
                    " archived: it cannot be used again."
                )
                % {"month": f"{taken.transaction_created_at.astimezone(SHANGHAI):%Y-%m}"},
                code="idempotency_key_archived",
                param="idempotency_key",
            )
    else:
        existing = model.objects.filter(idempotency_key=key).first()  # type: ignore[attr-defined]
    if existing is None:
        return None
    if existing.request_hash != digest:  # type: ignore[attr-defined]
        raise _key_reused()
    return existing


def keyed(model: type[M], key: str, digest: str, work: Callable[[], T]) -> T | M:
    """Runs a posting (`work`) in one transaction, or in one savepoint inside a caller's. The posting takes its key
    by inserting the row that carries it (`begin`, or the hold); a caller that finds the key taken, at once or after
    waiting for the first caller to commit, gets an IntegrityError there: everything it did rolls back and it returns
    the first result. So a replay posts nothing at all, and no read precedes the insert (a replay is rare)."""
    check_key(key)
    try:
        with transaction.atomic():
            return work()
    except IntegrityError:
        existing = replay(model, key, digest)
        if existing is None:
            raise
        return existing


# Account ids by identity, learnt by this process: accounts are never deleted or renamed and ids are never reused,
# so a posting that knows its accounts' ids locks them by primary key, without compiling their five-column lookups.
# Every row a lookup by id returns is checked against the identity it was taken for; a miss falls back to the lookup.
_account_ids: dict[Identity, int] = {}
# And their spreads (set at creation, never changed), by id: on Citus a read by id that names them goes to their shards
# alone instead of every shard.
_account_spreads: dict[int, int] = {}


def lock_accounts(refs: Iterable[AccountRef], ids: Iterable[int] = ()) -> dict[int, Account]:
    """Locks the accounts named by `refs` and `ids` in one `SELECT … FOR UPDATE ORDER BY id`, creating those of `refs`
    that do not exist yet (`INSERT … ON CONFLICT DO NOTHING`, in a fixed order, then the locking read again; on Citus
    before locking any: `_create_missing_unlocked`).
    Every posting and sweep locks all its accounts here, at once, in id order, so they never deadlock on each other
    (on Citus, one statement per shard: `_lock_shard_by_shard`)."""
    wanted = {ref.identity: ref for ref in refs}
    ids = set(ids)
    known = {identity: _account_ids.get(identity) for identity in wanted}
    if None not in known.values():
        locked = _lock(_by_pk(ids | {pk for pk in known.values() if pk is not None}))
        if all(pk in locked and AccountRef.identity_of(locked[pk]) == i for i, pk in known.items()):
            return locked
    conditions = [Q(**ref.lookup) for ref in wanted.values()]
    if ids:
        conditions.append(Q(pk__in=sorted(ids)))
    condition = functools.reduce(operator.or_, conditions)
    if settings.LEDGER_DISTRIBUTED:
        _create_missing_unlocked(wanted, condition)
        locked = _lock(condition)
    else:
        locked = _lock(condition)
        missing = wanted.keys() - {AccountRef.identity_of(a) for a in locked.values()}
        if missing:  # new ids come after those just locked (nearly always: a deadlock otherwise is retried)
            Account.objects.bulk_create([wanted[i].new_account() for i in sorted(missing)], ignore_conflicts=True)
            locked = _lock(condition)
    for account in locked.values():
        _account_ids[AccountRef.identity_of(account)] = account.pk
        _account_spreads[account.pk] = account.spread
    return locked


def _by_pk(pks: set[int]) -> Q:
    """The accounts `pks`; on Citus also by their spreads when all are known, so that the statements reading and
    locking them are routed to their shards (one, for a cardholder's posting) rather than sent to every shard."""
    condition = Q(pk__in=sorted(pks))
    spreads = {_account_spreads.get(pk) for pk in pks}
    if settings.LEDGER_DISTRIBUTED and None not in spreads:
        condition &= Q(spread__in=sorted(s for s in spreads if s is not None))
    return condition


def _create_missing_unlocked(wanted: dict[Identity, AccountRef], condition: Q) -> None:
    """On Citus, creates the accounts of `wanted` that do not exist yet before any account is locked. Locks there go
    in shard order, which is not the order accounts were created in: a posting that held an old account while it
    locked a new one on an earlier shard would deadlock with a posting locking both in shard order (and, being the
    older, outlive every retry of the other). No unique constraint to conflict on there: the missing identities' locks
    are taken, then they are looked for again (`creation_locks`)."""
    missing = wanted.keys() - {AccountRef.identity_of(a) for a in Account.objects.filter(condition)}
    if not missing:
        return
    creation_locks(missing)
    missing -= {AccountRef.identity_of(a) for a in Account.objects.filter(condition)}
    Account.objects.bulk_create([wanted[i].new_account() for i in sorted(missing)])


def _lock(condition: Q) -> dict[int, Account]:
    if settings.LEDGER_DISTRIBUTED:
        return _lock_shard_by_shard(condition)
    return {a.pk: a for a in Account.objects.select_for_update().filter(condition).order_by("pk")}


# The Citus shard that holds an account's row and its entries (both are distributed by spread, co-located).
_CITUS_SHARD = Func(
    Value("rewards_account"), "spread", function="get_shard_id_for_distribution_column", output_field=BigIntegerField()
)


def _lock_shard_by_shard(condition: Q) -> dict[int, Account]:
    """On Citus (`LEDGER_DISTRIBUTED`) a `SELECT … FOR UPDATE` may only read one shard. So the accounts' shards are
    read first, then each shard's accounts are locked in one statement, shard after shard in shard id order and in id
    order within a shard; a shard's statement names its accounts' spreads as well as their ids, so that Citus routes
    it to that shard alone (the accounts are distributed by spread, not by id). Every locker of accounts on Citus goes
    through here (postings, the hold and lot expiry sweeps, the bulk earn), so all take their locks in that one order
    and never deadlock on each other. A posting costs one statement more than the shards it touches (two for a
    cardholder's earn, redemption or hold, whose accounts share one spread); a sweep's chunk never more than the
    table's shards."""
    by_shard: dict[int, dict[int, int]] = defaultdict(dict)  # shard → {id: spread}
    found = Account.objects.filter(condition).annotate(shard_id=_CITUS_SHARD).values_list("pk", "spread", "shard_id")
    for pk, spread, shard in found:
        by_shard[shard][pk] = spread
    locked: dict[int, Account] = {}
    for shard in sorted(by_shard):
        group = by_shard[shard]
        rows = (
            Account.objects.select_for_update()
            .filter(spread__in=sorted(set(group.values())), pk__in=sorted(group))
            .order_by("pk")
        )
        locked.update((a.pk, a) for a in rows)
    return locked


def locked_refs(*refs: AccountRef) -> list[Account]:
    """`lock_accounts` for `refs`, returned in their order."""
    locked = {AccountRef.identity_of(a): a for a in lock_accounts(refs).values()}
    return [locked[ref.identity] for ref in refs]


@dataclass
class Posting:
    """A transaction being built under its locks."""

    txn: LedgerTransaction
    accounts: dict[int, Account]
    legs: list[tuple[int, int]] = field(default_factory=list)
    held_changes: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_identity = {AccountRef.identity_of(a): a for a in self.accounts.values()}

    def account(self, ref: AccountRef) -> Account:
        """The locked copy (current balances) of the account `ref` names."""
        return self._by_identity[ref.identity]

    def acc(self, account: Account) -> Account:
        """The locked copy (current balances) of `account`."""
        return self.accounts[account.pk]

    def leg(self, account: Account, amount: int) -> None:
        if amount:
            self.legs.append((account.pk, amount))


def begin(
    *,
    kind: str,
    key: str,
    digest: str,
    refs: Iterable[AccountRef],
    actor: Actor,
    metadata: dict[str, Any],
    points: int = 0,
    reverses: LedgerTransaction | None = None,
    rate: Decimal | None = None,
    account_ids: Iterable[int] = (),
) -> Posting:
    """Takes the idempotency key and inserts the transaction row (`transaction_keyed`; run it inside `keyed`), then
    locks the posting's accounts. The key comes first: a second caller with it waits on the key, holding no account
    lock."""
    txn = transaction_keyed(
        kind=kind,
        idempotency_key=key,
        request_hash=digest,
        points=points,
        reverses=reverses,
        reverses_created_at=reverses.created_at if reverses is not None else None,
        rate=rate,
        metadata=metadata,
        entry_count=0,  # its legs are known at `finish`, which writes their number
        **_actor_fields(actor),
    )
    return Posting(txn=txn, accounts=lock_accounts(refs, account_ids))


# The identity sequence of the transactions' ids (rewards/migrations/0023).
_TRANSACTION_IDS = "rewards_ledgertransaction_id_seq"


def transaction_keyed(*, idempotency_key: str, **fields: Any) -> LedgerTransaction:
    """Takes `idempotency_key` across every month, then inserts the transaction that took it, in the caller's database
    transaction. The key's row (`LedgerKey`) goes first, with the transaction's id drawn from its sequence and the
    transaction's time: a second posting with the key fails there on the primary key, at once or once the first
    commits, before it has written anything. The transaction's row then refers to it (checked at commit), so no
    transaction commits without its key."""
    created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)"
            " VALUES (%s, nextval(%s), %s) RETURNING transaction_id",
            [idempotency_key, _TRANSACTION_IDS, created_at],
        )
        (pk,) = cursor.fetchone()
    return LedgerTransaction.objects.create(id=pk, idempotency_key=idempotency_key, created_at=created_at, **fields)


def entries_counted(txn: LedgerTransaction, count: int) -> None:
    """Writes the number of entries the transaction is posted with, in the database transaction that writes them. Its
    row is written first (it takes the key) and its legs are known only later; the sealer waits until it sees that
    many entries (rewards/sealing.py)."""
    txn.entry_count = count
    LedgerTransaction.objects.one(txn.pk, txn.created_at).update(entry_count=count)


def finish(posting: Posting) -> LedgerTransaction:
    """Checks zero-sum and the balance rules, then writes balances and entries."""
    totals: dict[str, int] = defaultdict(int)
    per_account: dict[int, int] = defaultdict(int)
    for account_id, amount in posting.legs:
        totals[posting.accounts[account_id].unit] += amount
        per_account[account_id] += amount
    unbalanced = {unit: total for unit, total in totals.items() if total}
    if unbalanced:
        raise AssertionError(f"ledger transaction does not balance: {unbalanced}")
    entries: list[Entry] = []
    running: dict[int, int] = {}
    changed: list[Account] = []
    for account_id in sorted(set(per_account) | set(posting.held_changes)):
        account = posting.accounts[account_id]
        new_posted = account.posted + per_account.get(account_id, 0)
        new_held = account.held + posting.held_changes.get(account_id, 0)
        if not account.may_go_negative and new_posted < new_held:
            raise InsufficientFunds(
                _("Not enough points: %(available)d available, %(needed)d needed.")
                % {"available": account.available, "needed": -per_account.get(account_id, 0)},
                param="amount",
            )
        running[account_id] = account.posted
        account.posted, account.held, account.version = new_posted, new_held, account.version + 1
        changed.append(account)
    entries_counted(posting.txn, len(posting.legs))
    for account in changed:  # under the posting's locks, so the new values are exact
        # By id and spread: on Citus a statement naming the distribution value goes to its one shard.
        Account.objects.filter(pk=account.pk, spread=account.spread).update(
            posted=account.posted, held=account.held, version=account.version
        )
    for account_id, amount in posting.legs:
        running[account_id] += amount
        account = posting.accounts[account_id]
        entries.append(
            Entry(
                transaction=posting.txn,
                account_id=account_id,
                spread=account.spread,  # its account's: on Citus the entry sits on its account's shard
                unit=account.unit,
                amount=amount,
                balance_after=running[account_id],
                created_at=posting.txn.created_at,  # the entries share their transaction's month (partition)
            )
        )
    Entry.objects.bulk_create(entries)
    return posting.txn


def require_positive(amount: int, param: str = "amount") -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationFailed(_("The amount must be a positive whole number of points."), param=param)
