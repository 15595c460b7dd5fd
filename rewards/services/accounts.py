"""The ledger's accounts, created on first use.

A cardholder has a points wallet (the one kind of account that may not go negative) and a points debt in each
programme; a programme's bank has its issuance, redemption, breakage and exchange sub-accounts, spread over
`LEDGER_BANK_SHARDS` shards by cardholder; a bank and a merchant have a CNY clearing account, and the alliance has a
fee account (CNY, and any other currency an obligation is in).

A posting names its accounts by `AccountRef` (the account's unique owner, purpose, unit and shard) and
`posting.lock_accounts` fetches, creates and locks them all at once; `wallet_account` and the other getters return
an unlocked account for readers and for the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from members.models import PointsProgram

from ..models import Account, OwnerKind, Purpose

CNY = "CNY"
ALLIANCE_ID = 0


def shard_for(key: int) -> int:
    return key % max(1, settings.LEDGER_BANK_SHARDS)


def spread_for(owner_kind: str, owner_id: int, shard: int) -> int:
    """The `spread` an account is created with (the ledger's distribution value on Citus, docs/scaling.md): a
    cardholder's accounts take the cardholder's sub-account number, `shard_for(owner_id)`, which is the `shard` of
    every bank sub-account a posting of theirs touches (`bank_ref`); a bank sub-account its `shard`; every other
    account (clearing, the alliance's fees) 0. So a cardholder's earn, redemption or hold moves accounts of one
    spread: one shard. Set once: a row's spread never changes, even if `LEDGER_BANK_SHARDS` does."""
    if owner_kind == OwnerKind.CARDHOLDER:
        return shard_for(owner_id)
    if owner_kind == OwnerKind.BANK:
        return shard
    return 0


# An account's unique identity: owner kind and id, purpose, unit and sub-account.
IDENTITY_FIELDS = ("owner_kind", "owner_id", "purpose", "unit", "shard")
Identity = tuple[str, int, str, str, int]


@dataclass(frozen=True, order=True)
class AccountRef:
    """An account by its unique owner, purpose, unit and shard, with what its row needs when it is created."""

    owner_kind: str
    owner_id: int
    purpose: str
    unit: str
    shard: int = 0
    program_id: int | None = None
    bank_id: int | None = None

    @property
    def identity(self) -> Identity:
        return (self.owner_kind, self.owner_id, self.purpose, self.unit, self.shard)

    @property
    def lookup(self) -> dict[str, object]:
        """The identity as field lookups, to find the account's row."""
        return dict(zip(IDENTITY_FIELDS, self.identity, strict=True))

    @property
    def spread(self) -> int:
        """The spread a new row of this account gets (`spread_for`); an existing row's is read from it."""
        return spread_for(self.owner_kind, self.owner_id, self.shard)

    def new_account(self) -> Account:
        """The row this account starts as; only a cardholder's points wallet may not go negative."""
        return Account(
            owner_kind=self.owner_kind,
            owner_id=self.owner_id,
            purpose=self.purpose,
            unit=self.unit,
            shard=self.shard,
            spread=self.spread,
            program_id=self.program_id,
            bank_id=self.bank_id,
            may_go_negative=self.purpose != Purpose.POINTS,
        )

    @staticmethod
    def identity_of(account: Account) -> Identity:
        return (account.owner_kind, account.owner_id, account.purpose, account.unit, account.shard)


def account_get_or_create(
    *,
    owner_kind: str,
    owner_id: int,
    purpose: str,
    unit: str,
    program: PointsProgram | None = None,
    bank_id: int | None = None,
    shard: int = 0,
) -> Account:
    """An account (unlocked), created on first use."""
    return get_account(AccountRef(owner_kind, owner_id, purpose, unit, shard, program.pk if program else None, bank_id))


def get_account(ref: AccountRef) -> Account:
    defaults = {
        "program_id": ref.program_id,
        "bank_id": ref.bank_id,
        "spread": ref.spread,
        "may_go_negative": ref.new_account().may_go_negative,
    }
    # On Citus a missing account is created under its creation lock (see creation_locks), held to the commit.
    with transaction.atomic() if settings.LEDGER_DISTRIBUTED else contextlib.nullcontext():
        if settings.LEDGER_DISTRIBUTED and not Account.objects.filter(**ref.lookup).exists():
            creation_locks([ref.identity])
        account, _created = Account.objects.get_or_create(**ref.lookup, defaults=defaults)
    return account


def creation_locks(identities: Iterable[Identity]) -> None:
    """On Citus (`LEDGER_DISTRIBUTED`) the accounts' five-column uniqueness cannot be a constraint: a distributed
    table's unique keys must hold its distribution column, the account's id. So whoever is about to create accounts
    first takes a transaction-scoped advisory lock per identity, in a fixed order, in one statement, and then looks
    again: a second creator of the same account waits for the first's commit and finds its account. Every connection
    goes through the coordinator, which holds the locks. On one server the unique constraint does this, and nothing is
    taken."""
    if not settings.LEDGER_DISTRIBUTED:
        return
    assert connection.in_atomic_block, "creation locks last until the commit: take them in a transaction"
    keys = sorted({_lock_key(identity) for identity in identities})
    if not keys:
        return
    with connection.cursor() as cursor:  # one statement, taking them in the array's (sorted) order
        cursor.execute("SELECT pg_advisory_xact_lock(key) FROM unnest(%s::bigint[]) AS key", [keys])


def _lock_key(identity: Identity) -> int:
    digest = hashlib.blake2b(repr(("ledger-account", *identity)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def wallet_ref(cardholder_id: int, program: PointsProgram) -> AccountRef:
    return AccountRef(
        OwnerKind.CARDHOLDER, cardholder_id, Purpose.POINTS, program.unit_code, 0, program.pk, program.bank_id
    )


def debt_ref(cardholder_id: int, program: PointsProgram) -> AccountRef:
    return AccountRef(
        OwnerKind.CARDHOLDER, cardholder_id, Purpose.DEBT, program.unit_code, 0, program.pk, program.bank_id
    )


def bank_ref(program: PointsProgram, purpose: str, spread_key: int) -> AccountRef:
    """A bank-side sub-account of the program; `spread_key` (the cardholder) picks the shard."""
    return AccountRef(
        OwnerKind.BANK, program.bank_id, purpose, program.unit_code, shard_for(spread_key), program.pk, program.bank_id
    )


def clearing_ref(owner_kind: str, owner_id: int, currency: str = CNY) -> AccountRef:
    """A party's clearing account in `currency` (bank, merchant) or the alliance's fee account in it. Clearing nets
    each currency apart: an obligation in HKD moves the parties' HKD clearing accounts."""
    if owner_kind == OwnerKind.ALLIANCE:
        return AccountRef(owner_kind, ALLIANCE_ID, Purpose.FEES, currency)
    bank_id = owner_id if owner_kind == OwnerKind.BANK else None
    return AccountRef(owner_kind, owner_id, Purpose.CLEARING, currency, 0, None, bank_id)


def wallet_account(cardholder_id: int, program: PointsProgram) -> Account:
    return get_account(wallet_ref(cardholder_id, program))


def debt_account(cardholder_id: int, program: PointsProgram) -> Account:
    return get_account(debt_ref(cardholder_id, program))


def bank_points_account(program: PointsProgram, purpose: str, spread_key: int) -> Account:
    """A bank-side sub-account of the program; `spread_key` (the cardholder) picks the shard."""
    return get_account(bank_ref(program, purpose, spread_key))


def clearing_account(owner_kind: str, owner_id: int, currency: str = CNY) -> Account:
    """A party's clearing account in `currency` (bank, merchant) or the alliance's fee account in it."""
    return get_account(clearing_ref(owner_kind, owner_id, currency))


def wallet_bank_ref(wallet: Account, purpose: str) -> AccountRef:
    """The bank-side sub-account of the wallet's programme that `bank_ref` names, from the wallet row alone."""
    assert wallet.bank_id is not None, f"account {wallet.pk} is not a wallet"
    assert wallet.program_id is not None, f"account {wallet.pk} is not a wallet"
    return AccountRef(
        OwnerKind.BANK,
        wallet.bank_id,
        purpose,
        wallet.unit,
        shard_for(wallet.owner_id),
        wallet.program_id,
        wallet.bank_id,
    )
