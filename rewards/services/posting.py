"""The machinery every posting uses: the idempotency check, the transaction row, the locks, the entries, the retry.

Every posting: (1) an idempotency check (a replay returns the first transaction, the same key with other parameters
is an `IdempotencyConflict`); (2) the transaction row; (3) row locks on every account it touches in one statement,
ordered by id, then on holds, the reversed transaction and lots (always in that order, so postings never deadlock on
each other); (4) the entries, zero-sum per unit, each carrying the account's running balance. Deadlocks and
serialization failures are retried from the start; `InsufficientFunds` is raised only for a real shortfall, before
anything is written. See docs/ledger.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from core.errors import IdempotencyConflict, InsufficientFunds, ValidationFailed

from ..models import Account, Entry, Hold, LedgerTransaction

P = ParamSpec("P")
R = TypeVar("R")
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


@dataclass
class Posting:
    """A transaction being built under its locks."""

    txn: LedgerTransaction
    accounts: dict[int, Account]
    legs: list[tuple[int, int]]
    held_changes: dict[int, int]

    def leg(self, account: Account, amount: int) -> None:
        if amount:
            self.legs.append((account.pk, amount))

    def acc(self, account: Account) -> Account:
        """The locked copy (current balances) of `account`."""
        return self.accounts[account.pk]


def _key_reused() -> IdempotencyConflict:
    return IdempotencyConflict(
        _("This idempotency key was already used with different parameters."), param="idempotency_key"
    )


def replay(model: type[LedgerTransaction] | type[Hold], key: str, digest: str) -> Any:
    existing = model.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.request_hash != digest:
        raise _key_reused()
    return existing


def lock_accounts(accounts: Sequence[Account]) -> dict[int, Account]:
    ids = sorted({a.pk for a in accounts})
    locked = {a.pk: a for a in Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    return locked


def begin(
    *,
    kind: str,
    key: str,
    digest: str,
    accounts: Sequence[Account],
    actor: Actor,
    metadata: dict[str, Any],
    points: int = 0,
    reverses: LedgerTransaction | None = None,
    rate: Decimal | None = None,
) -> Posting | LedgerTransaction:
    """Returns the first transaction on a replay, else a Posting with the accounts locked."""
    if not key or len(key) > 200:
        raise ValidationFailed(_("An idempotency key of 1 to 200 characters is required."), param="idempotency_key")
    existing = replay(LedgerTransaction, key, digest)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            txn = LedgerTransaction.objects.create(
                kind=kind,
                idempotency_key=key,
                request_hash=digest,
                points=points,
                reverses=reverses,
                rate=rate,
                metadata=metadata,
                **_actor_fields(actor),
            )
    except IntegrityError:
        # Another request with this key committed first.
        existing = replay(LedgerTransaction, key, digest)
        if existing is None:
            raise
        return existing
    return Posting(txn=txn, accounts=lock_accounts(accounts), legs=[], held_changes={})


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
        Account.objects.filter(pk=account_id).update(posted=new_posted, held=new_held, version=F("version") + 1)
        running[account_id] = account.posted
        account.posted, account.held, account.version = new_posted, new_held, account.version + 1
    for account_id, amount in posting.legs:
        running[account_id] += amount
        account = posting.accounts[account_id]
        entries.append(
            Entry(
                transaction=posting.txn,
                account_id=account_id,
                unit=account.unit,
                amount=amount,
                balance_after=running[account_id],
            )
        )
    Entry.objects.bulk_create(entries)
    return posting.txn


def require_positive(amount: int, param: str = "amount") -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationFailed(_("The amount must be a positive whole number of points."), param=param)
