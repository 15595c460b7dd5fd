"""`ledger_check`: every invariant of the ledger, verified set-based in SQL, plus the seal chain against the exported,
signed heads. Each check names every violation it finds."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from core.partitions import archive_tables, is_archive_of, with_archives

from . import sealing
from .models import Seal

_LIMIT = 50  # violations named per check; the count says how many more


@dataclass
class CheckReport:
    checked: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class _Ledger:
    """What the checks read as the ledger's entries and transactions: each table, or a subquery adding its archived
    months."""

    entries: str
    transactions: str


def _reading(sql: str, ledger: _Ledger) -> str:
    """`sql` reading the ledger's entries where it says `{entries}` and its transactions where it says
    `{transactions}`."""
    return sql.replace("{entries}", ledger.entries).replace("{transactions}", ledger.transactions)


def _rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _scalar(sql: str) -> int:
    return int(_rows(sql)[0][0] or 0)


def _named(report: CheckReport, label: str, rows: list[tuple[Any, ...]], describe: Any) -> None:
    for row in rows[:_LIMIT]:
        report.violations.append(f"{label}: {describe(row)}")
    if len(rows) > _LIMIT:
        report.violations.append(f"{label}: … and {len(rows) - _LIMIT} more")


SQL_ZERO_SUM = """
    SELECT transaction_id, unit, SUM(amount) FROM {entries} AS e
    GROUP BY transaction_id, unit HAVING SUM(amount) <> 0 ORDER BY transaction_id LIMIT 1000
"""
# An entry carries its transaction's time: the table is partitioned on it, and reads of a transaction's entries (the
# seal's digest among them) look in that time's partition only.
SQL_ENTRY_TIME = """
    SELECT e.id, e.transaction_id FROM {entries} AS e JOIN {transactions} AS t ON t.id = e.transaction_id
    WHERE e.created_at <> t.created_at ORDER BY e.id LIMIT 1000
"""
# A transaction has the entries it was posted with: none lost, none added (on Citus, one whose entries are still
# committing on the workers shows here until they have). The entries are counted on their own first, then joined.
SQL_ENTRY_COUNT = """
    WITH counted AS MATERIALIZED (
        SELECT transaction_id AS id, COUNT(*) AS entries FROM {entries} AS e GROUP BY transaction_id
    )
    SELECT t.id, t.entry_count, COALESCE(counted.entries, 0) FROM {transactions} AS t
    LEFT JOIN counted ON counted.id = t.id
    WHERE t.entry_count <> COALESCE(counted.entries, 0) ORDER BY t.id LIMIT 1000
"""
# Entries join their account on (account_id, spread), as on Citus the two tables are distributed and co-located by
# spread, which a join between them must name.
SQL_BALANCES = """
    SELECT a.id, a.posted, COALESCE(e.total, 0) FROM rewards_account a
    LEFT JOIN (SELECT account_id, spread, SUM(amount) AS total FROM {entries} AS e GROUP BY account_id, spread) e
      ON e.account_id = a.id AND e.spread = a.spread
    WHERE a.posted <> COALESCE(e.total, 0) ORDER BY a.id LIMIT 1000
"""
SQL_RUNNING = """
    SELECT e.account_id, e.id, e.balance_after, a.posted FROM {entries} AS e
    JOIN rewards_account a ON a.id = e.account_id AND a.spread = e.spread
    JOIN (SELECT account_id, spread, MAX(id) AS last_id FROM {entries} AS e GROUP BY account_id, spread) m
      ON m.account_id = e.account_id AND m.spread = e.spread AND m.last_id = e.id
    WHERE e.balance_after <> a.posted ORDER BY e.account_id LIMIT 1000
"""
SQL_LOTS_VS_WALLET = """
    SELECT a.id, a.posted, COALESCE(l.total, 0) FROM rewards_account a
    LEFT JOIN (SELECT account_id, SUM(remaining) AS total FROM rewards_lot GROUP BY account_id) l ON l.account_id = a.id
    WHERE a.purpose = 'points' AND a.posted <> COALESCE(l.total, 0) ORDER BY a.id LIMIT 1000
"""
SQL_LOT_MOVEMENTS = """
    SELECT l.id, l.remaining, l.amount + COALESCE(m.total, 0) FROM rewards_lot l
    LEFT JOIN (SELECT lot_id, SUM(amount) AS total FROM rewards_lotmovement GROUP BY lot_id) m ON m.lot_id = l.id
    WHERE l.remaining <> l.amount + COALESCE(m.total, 0) ORDER BY l.id LIMIT 1000
"""
SQL_NEGATIVES = """
    SELECT id, purpose, posted, held FROM rewards_account
    WHERE (NOT may_go_negative AND posted < held) OR held < 0 OR (purpose = 'debt' AND posted > 0)
    ORDER BY id LIMIT 1000
"""
SQL_HOLDS = """
    SELECT a.id, a.held, COALESCE(h.total, 0) FROM rewards_account a
    LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM rewards_hold WHERE status = 'pending' GROUP BY account_id) h
      ON h.account_id = a.id
    WHERE a.held <> COALESCE(h.total, 0) ORDER BY a.id LIMIT 1000
"""
SQL_POSTED_HOLDS = """
    SELECT h.id FROM rewards_hold h LEFT JOIN {transactions} AS t ON t.id = h.transaction_id
    WHERE (h.status = 'posted' AND (t.id IS NULL OR t.points <> h.posted_amount))
       OR (h.status <> 'posted' AND h.transaction_id IS NOT NULL)
    ORDER BY h.id LIMIT 1000
"""
# Version 1: the sealed transactions' entry lines. The entries are read on their own (on Citus they are distributed
# and the transactions are the coordinator's), then joined to their transactions.
SQL_SEAL_CONTENT = """
    WITH v1 AS MATERIALIZED (
        SELECT t.seal_id, t.id, t.kind, t.idempotency_key FROM {transactions} AS t
        JOIN rewards_seal s ON s.id = t.seal_id WHERE s.version = 1
    ), e AS MATERIALIZED (
        SELECT e.transaction_id, e.id, e.account_id, e.unit, e.amount FROM {entries} AS e
        WHERE e.transaction_id IN (SELECT id FROM v1)
    )
    SELECT t.seal_id, COUNT(DISTINCT t.id), COUNT(e.id),
           encode(sha256(convert_to(COALESCE(string_agg(
               t.id || '|' || t.kind || '|' || t.idempotency_key || '|' || e.id || '|' || e.account_id || '|' ||
               e.unit || '|' || e.amount, E'\\n' ORDER BY e.id), ''), 'UTF8')), 'hex'),
           MIN(t.id), MAX(t.id)
    FROM v1 t LEFT JOIN e ON e.transaction_id = t.id
    GROUP BY t.seal_id
"""
# Version 2: each sealed transaction's digest recomputed from its rows as they are now, against the digest it was
# sealed with; per seal, the content hash recomputed, and the transactions whose rows changed.
_SEALED_V2 = "t.seal_id IN (SELECT s.id FROM rewards_seal s WHERE s.version = 2)"
_SEALED_V2_ENTRIES = (
    "e.transaction_id IN (SELECT t.id FROM {transactions} AS t"
    " WHERE t.seal_id IN (SELECT s.id FROM rewards_seal s WHERE s.version = 2))"
)


def _sql_seal_content_v2(ledger: _Ledger) -> str:
    digests = sealing.sql_transaction_digests(
        _SEALED_V2,
        _reading(_SEALED_V2_ENTRIES, ledger),
        ", t.seal_id, t.seal_digest",
        ledger.entries,
        ledger.transactions,
    )
    return f"""
    WITH d AS ({digests})
    SELECT d.seal_id, COUNT(*), SUM(d.entries), {sealing.SQL_CONTENT.format(column="digest")}, MIN(d.id), MAX(d.id),
           COALESCE(array_agg(d.id ORDER BY d.id) FILTER (WHERE d.digest <> d.seal_digest), '{{}}')
    FROM d GROUP BY d.seal_id
    """  # noqa: S608 - constants and the entries' source


# The columns the checks read of an entry and of a transaction (an archive table keeps the columns its month had when
# it was detached).
_ENTRY_COLUMNS = ("id", "transaction_id", "account_id", "spread", "unit", "amount", "balance_after", "created_at")
_TRANSACTION_COLUMNS = (
    "id", "kind", "idempotency_key", "request_hash", "points", "reverses_id", "rate", "actor_id", "actor_label",
    "metadata", "seal_id", "seal_digest", "entry_count", "created_at",
)  # fmt: skip


def _source(report: CheckReport, table: str, columns: tuple[str, ...], label: str) -> str:
    """`table` and each archived month of it (a row moved to an archive table is still the ledger's). An archived
    month whose table has gone, or whose record names no archive table of `table`, is named as a violation and not
    read."""
    archives = []
    for name in archive_tables(table):
        if not is_archive_of(table, name):
            report.violations.append(f"archived {label}: {name!r} is not the name of an archive of {label}")
        elif _rows("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]:
            archives.append(name)
        else:
            report.violations.append(f"archived {label}: the archive table {name} is missing")
    return with_archives(table, columns, archives)


def _ledger_source(report: CheckReport) -> _Ledger:
    return _Ledger(
        entries=_source(report, "rewards_entry", _ENTRY_COLUMNS, "entries"),
        transactions=_source(report, "rewards_ledgertransaction", _TRANSACTION_COLUMNS, "transactions"),
    )


@dataclass(frozen=True)
class _Recomputed:
    """A seal's figures recomputed from its rows as they are now."""

    transactions: int
    entries: int
    content: str
    first: int
    last: int
    changed: tuple[int, ...] = ()  # version 2: transactions whose rows no longer hash to their sealed digest


def _seal_contents(ledger: _Ledger) -> dict[int, _Recomputed]:
    contents = {
        row[0]: _Recomputed(int(row[1]), int(row[2]), row[3], int(row[4]), int(row[5]))
        for row in _rows(_reading(SQL_SEAL_CONTENT, ledger))
    }
    for row in _rows(_sql_seal_content_v2(ledger)):
        contents[row[0]] = _Recomputed(int(row[1]), int(row[2] or 0), row[3], int(row[4]), int(row[5]), tuple(row[6]))
    return contents


def _named_transactions(ids: tuple[int, ...]) -> str:
    shown = ", ".join(str(i) for i in ids[:_LIMIT])
    more = f" and {len(ids) - _LIMIT} more" if len(ids) > _LIMIT else ""
    return f"transaction{'s' if len(ids) > 1 else ''} {shown}{more}"


def _check_seals(report: CheckReport, ledger: _Ledger) -> None:
    key = sealing.seal_key()
    exported = sealing.exported_heads()
    contents = _seal_contents(ledger)
    seals = list(Seal.objects.order_by("id"))
    previous = sealing.GENESIS
    for seal in seals:
        label = f"seal {seal.pk}"
        now = contents.get(seal.pk, _Recomputed(0, 0, sealing.GENESIS, 0, 0))
        if seal.previous_hash != previous:
            report.violations.append(f"seal chain: {label} does not follow the previous seal")
        for txn_id in now.changed:
            report.violations.append(
                f"seal chain: transaction {txn_id} (in {label}) was changed after it was sealed: its rows no longer"
                " hash to its sealed digest"
            )
        if (now.transactions, now.entries, now.content, now.first, now.last) != (
            seal.transaction_count,
            seal.entry_count,
            seal.content_hash,
            seal.first_transaction_id,
            seal.last_transaction_id,
        ):
            if now.changed:
                cause = f"{_named_transactions(now.changed)} changed"
            else:
                cause = "a sealed transaction or entry was changed, added or removed"
            report.violations.append(
                f"seal chain: {label} (transactions {seal.first_transaction_id}–{seal.last_transaction_id}) no longer"
                f" matches its rows: {cause}"
            )
        recomputed = sealing.head_hash(
            seal_id=seal.pk,
            previous=seal.previous_hash,
            content=now.content,
            transactions=now.transactions,
            entries=now.entries,
            first=now.first,
            last=now.last,
            version=seal.version,
        )
        if recomputed != seal.hash:
            report.violations.append(f"seal chain: {label} hash does not match its contents")
        if not hmac.compare_digest(sealing.sign(seal.hash, key), seal.signature):
            report.violations.append(f"seal chain: {label} signature is not valid for its hash")
        head = exported.get(seal.pk)
        if head is None:
            report.violations.append(f"seal chain: {label} is missing from the exported heads")
        elif head["hash"] != seal.hash or not hmac.compare_digest(sealing.sign(head["hash"], key), head["signature"]):
            report.violations.append(f"seal chain: {label} differs from its exported, signed head")
        previous = seal.hash
    known = {seal.pk for seal in seals}
    for seal_id in sorted(set(exported) - known):
        report.violations.append(f"seal chain: exported seal {seal_id} is missing from the database")
    report.checked.append(f"seal chain: {len(seals)} seals against {len(exported)} exported signed heads")


def ledger_verify(*, seals: bool = True) -> CheckReport:
    report = CheckReport()
    ledger = _ledger_source(report)
    entry_count = _scalar(_reading("SELECT COUNT(*) FROM {entries} AS e", ledger))
    txns = _scalar(_reading("SELECT COUNT(*) FROM {transactions} AS t", ledger))
    accounts = _scalar("SELECT COUNT(*) FROM rewards_account")
    lots = _scalar("SELECT COUNT(*) FROM rewards_lot")
    holds = _scalar("SELECT COUNT(*) FROM rewards_hold")

    _named(
        report,
        "zero-sum",
        _rows(_reading(SQL_ZERO_SUM, ledger)),
        lambda r: f"transaction {r[0]} sums to {r[2]} in {r[1]}",
    )
    report.checked.append(f"zero-sum per transaction and unit: {txns} transactions, {entry_count} entries")
    _named(
        report,
        "entry time",
        _rows(_reading(SQL_ENTRY_TIME, ledger)),
        lambda r: f"entry {r[0]} is not dated at its transaction {r[1]}'s time",
    )
    report.checked.append("each entry dated at its transaction's time")
    _named(
        report,
        "entry count",
        _rows(_reading(SQL_ENTRY_COUNT, ledger)),
        lambda r: f"transaction {r[0]} was posted with {r[1]} entries but has {r[2]}",
    )
    report.checked.append("each transaction has the entries it was posted with")
    _named(
        report,
        "cached balance",
        _rows(_reading(SQL_BALANCES, ledger)),
        lambda r: f"account {r[0]} shows {r[1]} but its entries sum to {r[2]}",
    )
    report.checked.append(f"cached balances equal the sum of entries: {accounts} accounts")
    _named(
        report,
        "running balance",
        _rows(_reading(SQL_RUNNING, ledger)),
        lambda r: f"account {r[0]} last entry {r[1]} has balance_after {r[2]}, account shows {r[3]}",
    )
    report.checked.append("running balance of each account's last entry")
    _named(
        report,
        "lots",
        _rows(SQL_LOTS_VS_WALLET),
        lambda r: f"wallet {r[0]} holds {r[1]} points but its lots hold {r[2]}",
    )
    _named(
        report,
        "lot movements",
        _rows(SQL_LOT_MOVEMENTS),
        lambda r: f"lot {r[0]} has {r[1]} remaining but its movements give {r[2]}",
    )
    report.checked.append(f"lots equal wallet balances and their movements: {lots} lots")
    _named(
        report,
        "negative balance",
        _rows(SQL_NEGATIVES),
        lambda r: f"account {r[0]} ({r[1]}) posted {r[2]}, held {r[3]}",
    )
    report.checked.append("no forbidden negative balance")
    _named(
        report,
        "holds",
        _rows(SQL_HOLDS),
        lambda r: f"account {r[0]} holds {r[1]} but its pending holds total {r[2]}",
    )
    _named(
        report,
        "holds",
        _rows(_reading(SQL_POSTED_HOLDS, ledger)),
        lambda r: f"hold {r[0]} and its transaction disagree",
    )
    report.checked.append(f"held amounts equal pending holds: {holds} holds")
    if seals:
        _check_seals(report, ledger)
    return report
