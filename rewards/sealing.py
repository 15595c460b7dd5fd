"""Sealing: batches of transactions chained by hash, each head signed with a key that is not in the database and
exported, one object per seal that is written once and never again, to the `ledger_seals` storage (settings'
STORAGES: a directory by default; any Django storage backend — shared by every machine that seals or checks).

Version 2 (every seal made now) covers every column a later computation reads. Each transaction's rows — the
transaction (kind, key, request hash, points, the transaction it reverses, rate, actor, created time, metadata), its
entries (account, unit, amount, balance after), the lots it formed (account, programme, amount, earned and expiry
days) and its lot movements — are written as canonical text (`SQL_TRANSACTION_TEXT`, computed in SQL by the sealer
and by `ledger_check` alike) and hashed; the hash is kept on the transaction (`seal_digest`) so that a later edit
names its transaction. Then
    content_hash = sha256 of "<transaction id>|<digest>" lines, in id order, joined by "\n";
    hash = sha256("v2|<seal id>|<previous hash>|<content hash>|<transactions>|<entries>|<first>|<last>");
    signature = HMAC-SHA256(key, hash).
Version 1 seals (made before) covered the entries' "<transaction id>|<kind>|<key>|<entry id>|<account>|<unit>|<amount>"
lines and hash without the "v1|" prefix; they keep verifying as they were made.

A batch holds only transactions whose entries the sealer sees all of: each transaction carries the number of entries
it was posted with (`entry_count`), the digests' read counts the entries it sees, and the batch ends before the first
transaction where the two differ (`complete_prefix`) — on Citus, one whose entries have not committed on every worker
yet. It waits for the next seal; the count is not hashed, so the digest stays as it was.

Sealing is serialised by a PostgreSQL advisory lock, whatever starts it (the beat job, a manual run, a run that
outlasts its period): a sealer reads the head only once it holds the lock, and the database refuses two seals after
one head. Someone who can write to the database can recompute the hashes, but not the signatures, and cannot change
the heads already exported.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import connection, transaction

from .models import SEAL_VERSION, LedgerTransaction, Seal

GENESIS = "0" * 64
BATCH_SIZE = 2000
SEAL_LOCK = int.from_bytes(b"mk-seal", "big")  # the advisory lock every sealer takes

# One transaction's rows as canonical text (version 2); `t` is the transaction, `en`, `lt` and `mt` its entries', lots'
# and lot movements' lines (`SQL_TRANSACTION_PARTS`). Tagged lines, "|"-separated, nulls as "-", times in
# microseconds since the epoch, metadata as PostgreSQL's normalised jsonb text.
SQL_TRANSACTION_TEXT = r"""concat_ws(E'\n',
    concat_ws('|', 't', t.id, t.kind, t.idempotency_key, t.request_hash, t.points,
              COALESCE(t.reverses_id::text, '-'), COALESCE(t.rate::text, '-'), COALESCE(t.actor_id::text, '-'),
              t.actor_label, (extract(epoch FROM t.created_at) * 1000000)::bigint, t.metadata::text),
    en.text, lt.text, mt.text)"""
SQL_TRANSACTION_DIGEST = f"encode(sha256(convert_to({SQL_TRANSACTION_TEXT}, 'UTF8')), 'hex')"
# Each table's lines grouped by transaction, each read on its own, then joined to the transactions: on Citus the
# entries are distributed and the transactions are the coordinator's, and Citus joins them only through a result
# computed first (a materialized CTE), never row by row in a correlated subquery. `{transactions}` picks the
# transactions (a condition on `t`), `{entries}` the entries worth grouping (a condition on `e`); the entries of
# another month than their transaction's are counted but not hashed, as `ledger_check` reports them ("entry time").
SQL_TRANSACTION_PARTS = r"""
    WITH en_all AS MATERIALIZED (
        SELECT e.transaction_id AS id, e.created_at, COUNT(*) AS entries,
               string_agg(concat_ws('|', 'e', e.id, e.account_id, e.unit, e.amount, e.balance_after), E'\n'
                          ORDER BY e.id) AS text
        FROM {source} AS e WHERE {entries} GROUP BY e.transaction_id, e.created_at
    ), lt AS MATERIALIZED (
        SELECT l.earned_by_id AS id,
               string_agg(concat_ws('|', 'l', l.id, l.account_id, l.program_id, l.amount,
                                    to_char(l.earned_on, 'YYYY-MM-DD'), to_char(l.expires_on, 'YYYY-MM-DD')),
                          E'\n' ORDER BY l.id) AS text
        FROM rewards_lot l WHERE l.earned_by_id IN (SELECT t.id FROM {ledger} t WHERE {transactions})
        GROUP BY l.earned_by_id
    ), mt AS MATERIALIZED (
        SELECT m.transaction_id AS id, string_agg(concat_ws('|', 'm', m.id, m.lot_id, m.amount), E'\n' ORDER BY m.id)
               AS text
        FROM rewards_lotmovement m
        WHERE m.transaction_id IN (SELECT t.id FROM {ledger} t WHERE {transactions})
        GROUP BY m.transaction_id
    ), counted AS (
        SELECT id, SUM(entries) AS entries FROM en_all GROUP BY id
    )
"""
SQL_TRANSACTION_JOINS = """
    LEFT JOIN en_all en ON en.id = t.id AND en.created_at = t.created_at
    LEFT JOIN lt ON lt.id = t.id
    LEFT JOIN mt ON mt.id = t.id
    LEFT JOIN counted ON counted.id = t.id
"""
# The content hash over "<id>|<digest>" lines of `d` (rows with `id` and a digest column named by the caller).
SQL_CONTENT = (
    r"encode(sha256(convert_to(COALESCE(string_agg(d.id || '|' || d.{column}, E'\n' ORDER BY d.id), ''), 'UTF8')),"
    r" 'hex')"
)


def sql_transaction_digests(
    transactions: str,
    entries: str,
    columns: str = "",
    source: str = "rewards_entry",
    ledger: str = "rewards_ledgertransaction",
) -> str:
    """A SELECT of (id, digest, entries, *columns of `t`) for the transactions `transactions` picks (a condition on
    `t`), in id order; `entries` (a condition on `e`) bounds the entries read to at least theirs, read from `source`
    (the table, or a subquery adding its archived months); the transactions are read from `ledger` (the same)."""
    parts = SQL_TRANSACTION_PARTS.format(transactions=transactions, entries=entries, source=source, ledger=ledger)
    return (
        f"{parts} SELECT t.id, {SQL_TRANSACTION_DIGEST} AS digest,"  # noqa: S608 - constants
        f" COALESCE(counted.entries, 0) AS entries{columns}"
        f" FROM {ledger} t {SQL_TRANSACTION_JOINS} WHERE {transactions} ORDER BY t.id"
    )


# The sealer's batch: its digests, the entries it sees of each transaction and the number it was posted with,
# computed apart from the update that keeps them. The entries are bounded by the batch's first and last transaction's
# time as well, which is theirs (an entry's created_at is its transaction's), so that only the months the batch spans
# are read.
SQL_BATCH_DIGESTS = sql_transaction_digests(
    "t.id = ANY(%(ids)s)",
    "e.transaction_id = ANY(%(ids)s) AND e.created_at BETWEEN %(since)s AND %(until)s",
    ", t.entry_count",
)
SQL_SEAL_TRANSACTIONS = """
    UPDATE rewards_ledgertransaction t SET seal_id = %(seal)s, seal_digest = d.digest
    FROM unnest(%(ids)s::bigint[], %(digests)s::text[]) AS d(id, digest)
    WHERE t.id = d.id AND t.seal_id IS NULL
"""


def seal_key() -> bytes:
    path = getattr(settings, "LEDGER_SEAL_KEY_FILE", "")
    key = Path(path).read_bytes().strip() if path else (getattr(settings, "LEDGER_SEAL_KEY", "") or "").encode()
    if not key:
        raise ImproperlyConfigured("Set LEDGER_SEAL_KEY or LEDGER_SEAL_KEY_FILE to seal the ledger.")
    return key


def sign(head_hash: str, key: bytes | None = None) -> str:
    return hmac.new(key or seal_key(), head_hash.encode(), hashlib.sha256).hexdigest()


def canonical_lines(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """rows: (transaction id, digest) in id order (version 2), or, for a version 1 seal, (transaction id, kind, key,
    entry id, account id, unit, amount) in entry id order."""
    return "\n".join("|".join(str(value) for value in row) for row in rows).encode()


def head_hash(
    *,
    seal_id: int,
    previous: str,
    content: str,
    transactions: int,
    entries: int,
    first: int,
    last: int,
    version: int = SEAL_VERSION,
) -> str:
    text = f"{seal_id}|{previous}|{content}|{transactions}|{entries}|{first}|{last}"
    if version >= 2:
        text = f"v{version}|{text}"
    return hashlib.sha256(text.encode()).hexdigest()


def transaction_digests(seal_id: int) -> list[tuple[int, str]]:
    """(transaction id, digest of its rows as they are now) for the seal's transactions, in id order."""
    sealed = "t.seal_id = %(seal)s"
    entries = "e.transaction_id IN (SELECT t.id FROM rewards_ledgertransaction t WHERE t.seal_id = %(seal)s)"
    with connection.cursor() as cursor:
        cursor.execute(sql_transaction_digests(sealed, entries), {"seal": seal_id})
        return [(int(row[0]), str(row[1])) for row in cursor.fetchall()]


def seal_rows(seal_id: int) -> list[tuple[Any, ...]]:
    """The rows a seal's content hash is made of, as they are now (`canonical_lines` joins them)."""
    return list(transaction_digests(seal_id))


def head_storage() -> Storage:
    """Where signed heads are exported: the `ledger_seals` storage alias."""
    return storages["ledger_seals"]


def head_name(seal_id: int) -> str:
    """A seal's head object: one per seal, so sealers on several machines never write to one object, and a storage
    that cannot append (object storage) holds them as well as a directory."""
    return f"{seal_id:012d}.json"


def exported_heads() -> dict[int, dict[str, Any]]:
    """The exported heads by seal id, each as it was first written."""
    storage = head_storage()
    try:
        _, names = storage.listdir("")
    except FileNotFoundError:  # nothing exported yet: the directory is made by the first head
        return {}
    heads: dict[int, dict[str, Any]] = {}
    for name in sorted(names):
        if name.endswith(".json"):
            with storage.open(name) as stored:
                head = json.loads(stored.read())
            heads.setdefault(int(head["seal"]), head)
    return heads


def _export(seals: Iterable[Seal]) -> None:
    """Writes each seal's head unless it is there: a head once written is never replaced (a storage saves a second
    head under another name rather than overwrite, and the first is the one read)."""
    storage = head_storage()
    for seal in seals:
        name = head_name(seal.pk)
        if storage.exists(name):
            continue
        head = {
            "seal": seal.pk,
            "version": seal.version,
            "hash": seal.hash,
            "previous_hash": seal.previous_hash,
            "signature": seal.signature,
            "transactions": seal.transaction_count,
            "entries": seal.entry_count,
            "last_transaction_id": seal.last_transaction_id,
            "created_at": seal.created_at.isoformat(),
        }
        storage.save(name, ContentFile(json.dumps(head, sort_keys=True).encode()))


def export_missing_heads() -> int:
    """Exports the heads of seals not exported yet (a crash between commit and export); returns how many."""
    known = exported_heads()
    missing = [seal for seal in Seal.objects.order_by("id") if seal.pk not in known]
    if missing:
        _export(missing)
    return len(missing)


def complete_prefix(rows: Iterable[tuple[Any, ...]]) -> list[tuple[int, str, int]]:
    """rows: (transaction id, digest, entries seen, entries posted) in id order. The (id, digest, entries) of those
    before the first transaction whose entries are not all seen: on Citus a transaction's row commits on the
    coordinator before its entries on the workers (`COMMIT PREPARED`), with no snapshot across them, so a read in
    between sees it without (some of) its entries. That transaction and the ones after it wait for the next seal. On
    one PostgreSQL server a transaction's entries commit with it and every row is complete; a transaction that lost
    or gained an entry is never complete, and `ledger_check` names it."""
    complete: list[tuple[int, str, int]] = []
    for txn_id, digest, seen, posted in rows:
        if seen != posted:
            break
        complete.append((int(txn_id), str(digest), int(seen)))
    return complete


def _seal_one(key: bytes, batch_size: int) -> Seal | None:
    with transaction.atomic(), connection.cursor() as cursor:
        # Serialise sealers: the head is read only under the lock, so a sealer that waited sees the seal made
        # meanwhile and follows it (the unique previous_hash refuses a fork all the same).
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK])
        previous = Seal.objects.order_by("-id").first()
        batch = list(
            LedgerTransaction.objects.filter(seal__isnull=True)
            .order_by("id")
            .values_list("id", "created_at")[:batch_size]
        )
        if not batch:
            return None
        times = [created_at for _, created_at in batch]
        ids = [txn_id for txn_id, _ in batch]
        cursor.execute(SQL_BATCH_DIGESTS, {"ids": ids, "since": min(times), "until": max(times)})
        digests = complete_prefix(cursor.fetchall())
        if not digests:  # the first transaction's entries are not all visible yet
            return None
        ids = [txn_id for txn_id, _, _ in digests]
        seal = Seal.objects.create(
            version=SEAL_VERSION,
            previous_hash=previous.hash if previous else GENESIS,
            content_hash="",
            hash=f"pending-{ids[0]}-{ids[-1]}",
            signature="",
            transaction_count=len(ids),
            entry_count=0,
            first_transaction_id=ids[0],
            last_transaction_id=ids[-1],
        )
        cursor.execute(SQL_SEAL_TRANSACTIONS, {"seal": seal.pk, "ids": ids, "digests": [d for _, d, _ in digests]})
        assert cursor.rowcount == len(ids), f"seal {seal.pk}: sealed {cursor.rowcount} of {len(ids)} transactions"
        seal.content_hash = hashlib.sha256(canonical_lines((txn, digest) for txn, digest, _ in digests)).hexdigest()
        seal.entry_count = sum(entries for _, _, entries in digests)
        seal.hash = head_hash(
            seal_id=seal.pk,
            previous=seal.previous_hash,
            content=seal.content_hash,
            transactions=seal.transaction_count,
            entries=seal.entry_count,
            first=seal.first_transaction_id,
            last=seal.last_transaction_id,
            version=seal.version,
        )
        seal.signature = sign(seal.hash, key)
        seal.save(update_fields=["content_hash", "entry_count", "hash", "signature"])
        return seal


def seal_pending(*, batch_size: int = BATCH_SIZE, max_seals: int | None = None) -> int:
    """Seals every unsealed transaction in batches; exports each signed head once its seal has committed."""
    key = seal_key()
    export_missing_heads()
    made = 0
    while max_seals is None or made < max_seals:
        seal = _seal_one(key, batch_size)
        if seal is None:
            break
        _export([seal])
        made += 1
    return made
