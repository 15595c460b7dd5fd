"""Sealing: batches of transactions chained by hash, each head signed with a key that is not in the database and
exported to an append-only file.

content_hash = sha256 of the batch's canonical entry lines, in entry id order:
    "<transaction id>|<kind>|<idempotency key>|<entry id>|<account id>|<unit>|<amount>"
joined by "\\n"; hash = sha256("<seal id>|<previous hash>|<content hash>|<transactions>|<entries>|<first>|<last>");
signature = HMAC-SHA256(key, hash). Someone who can write to the database can recompute the hashes, but not the
signatures, and cannot change the heads already exported.
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
from django.db import transaction

from .models import Entry, LedgerTransaction, Seal

GENESIS = "0" * 64
BATCH_SIZE = 2000


def seal_key() -> bytes:
    path = getattr(settings, "LEDGER_SEAL_KEY_FILE", "")
    key = Path(path).read_bytes().strip() if path else (getattr(settings, "LEDGER_SEAL_KEY", "") or "").encode()
    if not key:
        raise ImproperlyConfigured("Set LEDGER_SEAL_KEY or LEDGER_SEAL_KEY_FILE to seal the ledger.")
    return key


def sign(head_hash: str, key: bytes | None = None) -> str:
    return hmac.new(key or seal_key(), head_hash.encode(), hashlib.sha256).hexdigest()


def canonical_lines(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """rows: (transaction id, kind, key, entry id, account id, unit, amount) in entry id order."""
    return "\n".join("|".join(str(value) for value in row) for row in rows).encode()


def head_hash(
    *, seal_id: int, previous: str, content: str, transactions: int, entries: int, first: int, last: int
) -> str:
    text = f"{seal_id}|{previous}|{content}|{transactions}|{entries}|{first}|{last}"
    return hashlib.sha256(text.encode()).hexdigest()


def seal_rows(seal_id: int) -> list[tuple[Any, ...]]:
    return list(
        Entry.objects.filter(transaction__seal_id=seal_id)
        .order_by("id")
        .values_list(
            "transaction_id", "transaction__kind", "transaction__idempotency_key", "id", "account_id", "unit", "amount"
        )
    )


def export_path() -> Path:
    return Path(settings.LEDGER_SEAL_EXPORT)


def exported_heads() -> dict[int, dict[str, Any]]:
    path = export_path()
    if not path.exists():
        return {}
    heads: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            head = json.loads(line)
            heads.setdefault(int(head["seal"]), head)
    return heads


def _export(seals: Iterable[Seal]) -> None:
    path = export_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for seal in seals:
            out.write(
                json.dumps(
                    {
                        "seal": seal.pk,
                        "hash": seal.hash,
                        "previous_hash": seal.previous_hash,
                        "signature": seal.signature,
                        "transactions": seal.transaction_count,
                        "entries": seal.entry_count,
                        "last_transaction_id": seal.last_transaction_id,
                        "created_at": seal.created_at.isoformat(),
                    },
                    sort_keys=True,
                )
                + "\n"
            )


def export_missing_heads() -> int:
    """Appends the heads of seals not yet in the export file (a crash between commit and export); returns how many."""
    known = exported_heads()
    missing = [seal for seal in Seal.objects.order_by("id") if seal.pk not in known]
    if missing:
        _export(missing)
    return len(missing)


def _seal_one(key: bytes, batch_size: int) -> Seal | None:
    with transaction.atomic():
        previous = Seal.objects.select_for_update().order_by("-id").first()
        ids = list(
            LedgerTransaction.objects.filter(seal__isnull=True).order_by("id").values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return None
        seal = Seal.objects.create(
            previous_hash=previous.hash if previous else GENESIS,
            content_hash="",
            hash=f"pending-{ids[0]}-{ids[-1]}",
            signature="",
            transaction_count=len(ids),
            entry_count=0,
            first_transaction_id=ids[0],
            last_transaction_id=ids[-1],
        )
        LedgerTransaction.objects.filter(pk__in=ids).update(seal=seal)
        rows = seal_rows(seal.pk)
        seal.content_hash = hashlib.sha256(canonical_lines(rows)).hexdigest()
        seal.entry_count = len(rows)
        seal.hash = head_hash(
            seal_id=seal.pk,
            previous=seal.previous_hash,
            content=seal.content_hash,
            transactions=seal.transaction_count,
            entries=seal.entry_count,
            first=seal.first_transaction_id,
            last=seal.last_transaction_id,
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
