"""Bulk earn at settlement: many earns in one ledger transaction, set-based.

The rules of `points_earn` hold (a points debt is paid off first, the rest forms lots); the accounts are locked by
`lock_accounts` in the one order every posting takes, and the rows go in by COPY.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils.translation import gettext as _

from core.errors import ValidationFailed
from members.models import PointsProgram

from ..models import Account, LedgerTransaction, OwnerKind, Purpose
from .accounts import bank_points_account, creation_locks, spread_for
from .lots import lot_expiry, today
from .posting import Kind, entries_counted, keyed, lock_accounts, require_positive, retry_on_conflict, transaction_keyed


@dataclass(frozen=True)
class EarnEvent:
    cardholder_id: int
    program_id: int
    amount: int


@retry_on_conflict
def points_earn_bulk(
    *, events: Sequence[EarnEvent], idempotency_key: str, earned_on: dt.date | None = None, source: str = "payment"
) -> LedgerTransaction:
    """Many earns in one ledger transaction, set-based: one entry per event (each payment stays traceable), one lot
    per wallet (the batch's points in a wallet are earned together, with one expiry date), one issuance entry per
    program. A cardholder's points debt is paid off first, as in `points_earn`. The rows go in by COPY."""
    if not events:
        raise ValidationFailed(_("No earn events given."), param="events")
    for event in events:
        require_positive(event.amount)
    earned_on = earned_on or today()
    digest = hashlib.sha256(
        "\n".join(f"{e.cardholder_id}|{e.program_id}|{e.amount}" for e in events).encode()
        + f"|{earned_on}|{source}".encode()
    ).hexdigest()
    programs = {p.pk: p for p in PointsProgram.objects.filter(pk__in={e.program_id for e in events})}
    if len(programs) != len({e.program_id for e in events}):
        raise ValidationFailed(_("Unknown points program in the events."), param="events")

    def post() -> LedgerTransaction:
        txn = transaction_keyed(  # a second caller with the key replays (`keyed`)
            kind=Kind.EARN_BATCH,
            idempotency_key=idempotency_key,
            request_hash=digest,
            points=sum(e.amount for e in events),
            metadata={"events": len(events), "source": source, "earned_on": earned_on.isoformat()},
            entry_count=0,  # counted below, once the debts to pay off are read under the locks
        )
        pairs = {(e.cardholder_id, e.program_id) for e in events}
        wallets = _bulk_accounts(pairs, programs, Purpose.POINTS)
        issuance = {pid: bank_points_account(p, Purpose.ISSUANCE, 0) for pid, p in programs.items()}
        debts = {
            (a.owner_id, a.program_id): a
            for a in Account.objects.filter(
                owner_kind=OwnerKind.CARDHOLDER,
                purpose=Purpose.DEBT,
                posted__lt=0,
                owner_id__in={c for c, _p in pairs},
                program_id__in=list(programs),
            )
        }
        lock_ids = {a.pk for a in wallets.values()} | {a.pk for a in issuance.values()} | {a.pk for a in debts.values()}
        locked = lock_accounts([], lock_ids)
        balances = {pk: account.posted for pk, account in locked.items()}
        spreads = {pk: account.spread for pk, account in locked.items()}  # each entry carries its account's
        deltas: dict[int, int] = defaultdict(int)
        entries: list[tuple[int, str, int, int]] = []
        lot_points: dict[tuple[int, int], int] = defaultdict(int)  # (wallet, program) → points earned together
        per_program: dict[int, int] = defaultdict(int)
        for event in events:
            program = programs[event.program_id]
            credit = event.amount
            debt = debts.get((event.cardholder_id, event.program_id))
            if debt is not None and balances[debt.pk] < 0:
                paid = min(credit, -balances[debt.pk])
                balances[debt.pk] += paid
                deltas[debt.pk] += paid
                entries.append((debt.pk, program.unit_code, paid, balances[debt.pk]))
                credit -= paid
            per_program[event.program_id] += event.amount
            if credit:
                wallet = wallets[(event.cardholder_id, event.program_id)]
                balances[wallet.pk] += credit
                deltas[wallet.pk] += credit
                entries.append((wallet.pk, program.unit_code, credit, balances[wallet.pk]))
                lot_points[(wallet.pk, event.program_id)] += credit
        for program_id, total in per_program.items():
            account = issuance[program_id]
            balances[account.pk] -= total
            deltas[account.pk] -= total
            entries.append((account.pk, programs[program_id].unit_code, -total, balances[account.pk]))
        lots = [
            (wallet_id, program_id, points, lot_expiry(programs[program_id], earned_on))
            for (wallet_id, program_id), points in lot_points.items()
        ]
        entries_counted(txn, len(entries))
        _bulk_write(txn.pk, txn.created_at, entries, spreads, lots, deltas, earned_on)
        return txn

    return keyed(LedgerTransaction, idempotency_key, digest, post)


def _bulk_accounts(
    pairs: set[tuple[int, int]], programs: dict[int, PointsProgram], purpose: str
) -> dict[tuple[int, int], Account]:
    def fetch() -> dict[tuple[int, int], Account]:
        found = Account.objects.filter(
            owner_kind=OwnerKind.CARDHOLDER,
            purpose=purpose,
            shard=0,
            owner_id__in={c for c, _p in pairs},
            program_id__in=list(programs),
        )
        return {(a.owner_id, a.program_id): a for a in found if a.program_id is not None}

    accounts = fetch()
    missing = pairs - set(accounts)
    if missing and settings.LEDGER_DISTRIBUTED:
        # No unique constraint to conflict on there: lock the identities, then look again (creation_locks).
        creation_locks(
            (OwnerKind.CARDHOLDER, cardholder_id, purpose, programs[program_id].unit_code, 0)
            for cardholder_id, program_id in missing
        )
        accounts = fetch()
        missing = pairs - set(accounts)
    if missing:
        Account.objects.bulk_create(
            [
                Account(
                    owner_kind=OwnerKind.CARDHOLDER,
                    owner_id=cardholder_id,
                    purpose=purpose,
                    unit=programs[program_id].unit_code,
                    spread=spread_for(OwnerKind.CARDHOLDER, cardholder_id, 0),
                    program_id=program_id,
                    bank_id=programs[program_id].bank_id,
                    may_go_negative=purpose != Purpose.POINTS,
                )
                for cardholder_id, program_id in missing
            ],
            ignore_conflicts=True,
        )
        accounts = fetch()
    return accounts


def _bulk_write(
    txn_id: int,
    created_at: dt.datetime,
    entries: list[tuple[int, str, int, int]],
    spreads: dict[int, int],
    lots: list[tuple[int, int, int, dt.date]],
    deltas: dict[int, int],
    earned_on: dt.date,
) -> None:
    import io

    with connection.cursor() as cursor:
        raw = cursor.cursor
        at = created_at.isoformat()  # the transaction's time: its entries sit in its month's partition
        buffer = io.StringIO(
            "".join(f"{txn_id}\t{a}\t{spreads[a]}\t{u}\t{amt}\t{bal}\t{at}\n" for a, u, amt, bal in entries)
        )
        raw.copy_expert(
            "COPY rewards_entry (transaction_id, account_id, spread, unit, amount, balance_after, created_at)"
            " FROM STDIN",
            buffer,
        )
        day = earned_on.isoformat()
        buffer = io.StringIO(
            "".join(f"{a}\t{p}\t{txn_id}\t{at}\t{amt}\t{amt}\t{day}\t{exp.isoformat()}\n" for a, p, amt, exp in lots)
        )
        raw.copy_expert(
            "COPY rewards_lot (account_id, program_id, earned_by_id, earned_by_created_at, amount, remaining,"
            " earned_on, expires_on) FROM STDIN",
            buffer,
        )
        ids, amounts = zip(*deltas.items(), strict=True)
        cursor.execute(
            "UPDATE rewards_account a SET posted = a.posted + d.delta, version = a.version + 1"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, delta) WHERE a.id = d.id",
            [list(ids), list(amounts)],
        )
