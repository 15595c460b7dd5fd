"""Reconciliation (对账): each channel's daily statement read, loaded by COPY, matched set-based against what we hold,
and every difference put in the operators' queue with its actions.

A channel's statement covers its own business date D: what happened from D−1 at its cut-off to D at its cut-off (the
channel's calendar, which knows no holidays). Its rows are matched against ours of that window:
- captures: payments captured in the window through the channel (its charged attempt's reference and id);
- reversals (撤销): captured payments reversed in the window;
- refunds: refunds that succeeded in the window;
- payouts: payouts sent through the channel in the window;
- and, as optional rows (matched when present, never missing), attempts reversed after a timeout (冲正): a charge the
  channel made and undid, which it may list as a capture and a reversal.

Matching, in SQL over the whole file (no loop over rows): first one-to-one by our reference (then by the channel's
transaction id for a row without one), then rows with neither by currency, amount and the nearest time within
RECON_TIME_WINDOW_SECONDS (mutual best pairs). Each row of either side ends in one class: matched,
missing_at_channel (ours, not on the statement), missing_with_us (on the statement, not ours), amount_mismatch,
status_mismatch; a channel transaction listed more than once is also a duplicate. See docs/reconciliation.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
import time
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg2
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from psycopg2 import sql

from core.admin_display import money_text
from core.approvals import ApprovalKind, approval_approve, approval_request
from core.audit import audit_record, snapshot
from core.calendar import SHANGHAI, load_calendar
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.jobs import job_run
from core.models import ApprovalRequest
from core.partitions import refuse_archived
from core.text import id_or_none
from merchants.services import require_operator_of
from rewards import services as rewards_services

from .. import statements
from ..connectors import get_connector
from ..connectors.base import Outcome, PayoutState, ReferenceRequest, RefundRequest, RemoteState
from ..models import (
    Channel,
    Dispute,
    PaymentAttempt,
    PaymentIntent,
    Payout,
    ReconciliationException,
    ReconClass,
    Refund,
    SettlementLine,
    StatementFetch,
    StatementImport,
)
from ..windows import payments_created_for_captures, refunds_created_for
from .cancel import cancel_finish
from .common import AttemptStatus, Status
from .disputes import dispute_open, disputes_poll
from .payouts import payout_returned_at_channel
from .refunds import refund_correction
from .settlement import on_a_line

logger = logging.getLogger("payments.reconciliation")

Exc = ReconciliationException
WRITE_OFF = "payments.write_off"
WRITE_OFF_PERMISSION = "payments.change_reconciliationexception"
OPEN = [str(status) for status in Exc.OPEN_STATUSES]
# The classes that contradict one of our payments or refunds: while open, it stays out of settlement batches.
HOLDING = (ReconClass.MISSING_AT_CHANNEL, ReconClass.AMOUNT_MISMATCH, ReconClass.STATUS_MISMATCH)
CLASSES = [c for c in ReconClass.values if c != ReconClass.STATEMENT_LATE]


# --- the statement's day ---------------------------------------------------------------------------------------------


def statement_window(channel: Channel, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The channel's business date `day`: from the day before at its cut-off until `day` at its cut-off."""
    return (
        dt.datetime.combine(day - dt.timedelta(days=1), channel.cutoff, tzinfo=SHANGHAI),
        dt.datetime.combine(day, channel.cutoff, tzinfo=SHANGHAI),
    )


def remote_key(channel: Channel) -> str:
    return channel.remote_id or channel.code


def statement_channels(channel: Channel) -> list[int]:
    """The channels one statement covers: every channel reaching the same remote channel through the same connector
    (a live channel and its sandbox twin share the channel's one statement)."""
    same = Channel.objects.filter(connector=channel.connector).filter(
        Q(remote_id=remote_key(channel)) | Q(remote_id="", code=remote_key(channel))
    )
    return sorted({channel.pk, *same.values_list("pk", flat=True)})


# --- import ----------------------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    statement: StatementImport
    created: bool
    summary: dict[str, Any] = field(default_factory=dict)


def statement_import(*, channel: Channel, day: dt.date, text: str, fmt: str = "", actor: Any = None) -> ImportResult:
    """Imports a statement file of `channel` for its business date `day` and matches it. The same file again (same
    SHA-256) changes nothing; another file for the day supersedes the one before, and the open exceptions it no
    longer shows with it. An unreadable file is refused (`ValidationFailed`), recorded as a failed import, and
    nothing of it is kept."""
    fmt = fmt or channel.statement_format
    digest = hashlib.sha256(text.encode()).hexdigest()
    existing = StatementImport.objects.filter(channel=channel, business_date=day, sha256=digest).first()
    if existing is not None:
        _refuse_failed(existing)
        return ImportResult(existing, False, existing.summary)
    _refuse_archived_day(channel, day)
    try:
        with transaction.atomic():
            _lock_day(channel, day)
            existing = StatementImport.objects.filter(channel=channel, business_date=day, sha256=digest).first()
            if existing is not None:
                return ImportResult(existing, False, existing.summary)
            previous = StatementImport.objects.filter(
                channel=channel, business_date=day, status=StatementImport.Status.MATCHED
            ).first()
            if previous is not None:
                StatementImport.objects.filter(pk=previous.pk).update(status=StatementImport.Status.SUPERSEDED)
            imported = StatementImport.objects.create(
                channel=channel, business_date=day, sha256=digest, format=fmt, received_at=timezone.now()
            )
            rows, warnings = _load(text, fmt, day, opens=statement_window(channel, day)[0])
            summary = _match(imported, channel, day)
            imported.rows, imported.errors, imported.summary = rows, warnings, summary
            imported.matched_at = timezone.now()
            imported.save(update_fields=["rows", "errors", "summary", "matched_at"])
            audit_record(
                actor=actor,
                action="reconciliation.statement_imported",
                obj=imported,
                after={"rows": rows, "format": fmt, "summary": _counts(summary),
                       "supersedes": previous.pk if previous else None},
                bank_id=channel.acquirer_id,
            )  # fmt: skip
            return ImportResult(imported, True, summary)
    except statements.StatementError as error:
        failed, _created = StatementImport.objects.get_or_create(
            channel=channel,
            business_date=day,
            sha256=digest,
            defaults={"format": fmt, "status": StatementImport.Status.FAILED, "errors": [str(error)]},
        )
        _refuse_failed(failed)
        raise AssertionError("unreachable") from error


def _refuse_failed(imported: StatementImport) -> None:
    if imported.status == StatementImport.Status.FAILED:
        raise ValidationFailed(
            _("The statement file cannot be read: %(error)s") % {"error": "; ".join(imported.errors)},
            code="statement_unreadable",
            param="file",
        )


def _lock_day(channel: Channel, day: dt.date) -> None:
    """One import of a channel's day at a time (a transaction-scoped advisory lock)."""
    key = int.from_bytes(hashlib.sha256(f"recon:{channel.pk}:{day}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


RAW = "recon_raw"  # the import's staging table (temporary: each import's own, dropped at commit)


def statement_read(*, text: str, fmt: str, day: dt.date) -> tuple[list[statements.Row], list[str]]:
    """What a file reads as, keeping nothing: its rows (a duplicate's copies once) and warnings. `StatementError`
    names the first line that cannot be read. For checking a file by hand, and the layouts' tests."""
    cutoff = Channel._meta.get_field("cutoff").default
    opens = dt.datetime.combine(day - dt.timedelta(days=1), cutoff, tzinfo=SHANGHAI)
    with transaction.atomic():
        _count, warnings = _load(text, fmt, day, opens=opens)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT kind, COALESCE(ref, ''), COALESCE(txn, ''), COALESCE(orig, ''), currency, amount, fee, status,"
                " at, line FROM (SELECT * FROM recon_rows UNION ALL SELECT * FROM recon_disputes) every ORDER BY line"
            )
            rows = [statements.Row(*row) for row in cursor.fetchall()]
            cursor.execute("DROP TABLE recon_rows; DROP TABLE recon_dups; DROP TABLE recon_disputes")
    return rows, warnings


def _load(text: str, fmt: str, day: dt.date, *, opens: dt.datetime) -> tuple[int, list[str]]:
    """Loads the file by COPY into the import's staging table (`recon_raw`, dropped at commit), checks every line
    and types the rows into `recon_rows` (line, kind, ref, txn, orig, currency, amount, fee, status, at; a duplicate's
    later copies taken out into `recon_dups`). `opens` is when the statement's day opened (the channel's cut-off the
    day before): a layout that gives only a time of day means the one moment of the day at that time. Returns the
    number of rows and the warnings."""
    layout = statements.LAYOUTS.get(fmt)
    if layout is None:
        raise statements.StatementError(0, f"unknown statement format {fmt!r}")
    text = text[1:] if text.startswith("\ufeff") else text
    text = text.rstrip("\r\n") + ("\r\n" if "\r\n" in text[:4096] else "\n")  # COPY wants one kind of line end
    if layout.header and text.split("\n", 1)[0].rstrip("\r") != layout.header:
        raise statements.StatementError(1, f"not a {fmt} header")
    params = {
        "day": day.isoformat(),
        "compact": day.strftime("%Y%m%d"),
        "opens": opens.astimezone(SHANGHAI).replace(tzinfo=None).isoformat(sep=" "),
    }
    raw = sql.Identifier(RAW)
    with connection.cursor() as cursor:
        # The import's sorts and hashes (half a million rows) in memory, for this transaction only.
        cursor.execute("SET LOCAL work_mem = '128MB'")
        for name in ("recon_raw", "recon_rows", "recon_dups", "recon_disputes"):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
        create = "CREATE TEMP TABLE {} (line bigint GENERATED ALWAYS AS IDENTITY (START WITH {}), {}) ON COMMIT DROP"
        columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in layout.columns)
        cursor.execute(sql.SQL(create).format(raw, sql.Literal(2 if layout.header else 1), columns))
        copy = sql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(
            raw, sql.SQL(", ").join(map(sql.Identifier, layout.columns)), sql.SQL(layout.copy_options)
        )
        try:
            # The buffer size positionally: the debug cursor wrapper (DEBUG on) passes on positional arguments only.
            cursor.copy_expert(copy.as_string(cursor.connection), io.StringIO(text), 1 << 20)
        except psycopg2.Error as error:
            context = getattr(error.diag, "context", "") or ""
            found = re.search(r"line (\d+)", context)
            message = getattr(error.diag, "message_primary", "") or str(error)
            raise statements.StatementError(int(found.group(1)) if found else 0, message) from None
        # One pass over the staging table: each line checked and, when it reads, typed. A line that does not read is
        # kept with its problem (and nothing typed: the casts are only made on a line that passed), as is no header
        # or total that reads.
        typed = ", ".join(
            f"CASE WHEN r.problem IS NULL THEN {_blank_is_none(name, expression)} END AS {name}"
            for name, expression in zip(statements.TYPED_COLUMNS, layout.typed, strict=True)
        )
        cursor.execute(
            f"CREATE TEMP TABLE recon_rows ON COMMIT DROP AS SELECT r.line, r.problem, {typed}"  # noqa: S608
            f" FROM (SELECT r.*, {layout.problem} AS problem FROM {RAW} r OFFSET 0) r"  # OFFSET 0: checked once
            f" WHERE r.problem IS NOT NULL OR {layout.detail}",
            params,
        )
        rows = cursor.rowcount  # every one a detail row, unless a line does not read
        cursor.execute("SELECT line, problem FROM recon_rows WHERE problem IS NOT NULL ORDER BY line LIMIT 1")
        bad = cursor.fetchone()
        if bad is not None:
            raise statements.StatementError(bad[0], bad[1])
        warnings = []
        if layout.totals:
            cursor.execute(layout.totals.replace("{raw}", RAW), params)
            warnings = [
                f"{what} says {count} rows, {total}; the rows add up to {found_count} rows, {found_total}"
                for what, count, total, found_count, found_total in cursor.fetchall()
            ]
        cursor.execute("DROP TABLE recon_raw")
        # The dispute rows go to a table of their own, for their own small pass (`_DISPUTE_PASS`): the payment rows'
        # matching never sees them (an opening and a decision of one dispute share its id: no duplicate either).
        cursor.execute(
            f"CREATE TEMP TABLE recon_disputes ON COMMIT DROP AS SELECT * FROM recon_rows"  # noqa: S608
            f" WHERE kind IN {statements.DISPUTE_KINDS_SQL}"
        )
        if cursor.rowcount:
            cursor.execute(f"DELETE FROM recon_rows WHERE kind IN {statements.DISPUTE_KINDS_SQL}")  # noqa: S608
        cursor.execute("ANALYZE recon_rows")  # a new table has no statistics: the planner would guess a handful
        # A channel transaction listed more than once: kept once for matching, its copies counted as a duplicate.
        cursor.execute(
            """CREATE TEMP TABLE recon_dups ON COMMIT DROP AS
               SELECT kind, txn, min(line) AS first, count(*) AS copies
               FROM recon_rows WHERE txn IS NOT NULL GROUP BY kind, txn HAVING count(*) > 1"""
        )
        cursor.execute("ANALYZE recon_dups")  # a few rows, which the planner should hash rather than the statement
        cursor.execute(
            "DELETE FROM recon_rows s USING recon_dups d WHERE d.kind = s.kind AND d.txn = s.txn AND s.line <> d.first"
        )
    return rows, warnings


def _blank_is_none(name: str, expression: str) -> str:
    """An empty reference or channel id is none (it matches nothing)."""
    return f"NULLIF({expression}, '')" if name in ("ref", "txn") else expression


# --- matching --------------------------------------------------------------------------------------------------------


def _tables() -> dict[str, sql.Identifier]:
    models: dict[str, Any] = {
        "payment": PaymentIntent,
        "attempt": PaymentAttempt,
        "refund": Refund,
        "payout": Payout,
        "exception": ReconciliationException,
        "line": SettlementLine,
        "dispute": Dispute,
    }
    return {name: sql.Identifier(model._meta.db_table) for name, model in models.items()}


_OURS = """
CREATE TEMP TABLE recon_ours ON COMMIT DROP AS
SELECT row_number() OVER () AS oid, ours.* FROM (
-- captures: the payment's charged attempt (captured, or reversed after its capture: no error recorded)
SELECT 'capture'::varchar AS kind, a.reference AS ref, NULLIF(a.channel_reference, '') AS txn, p.currency,
       p.amount_captured AS amount, 'success'::varchar AS status, p.captured_at AS at, p.id AS payment_id,
       NULL::bigint AS refund_id, NULL::bigint AS payout_id, false AS optional
FROM {payment} p JOIN {attempt} a
  ON a.intent_id = p.id AND a.intent_created_at = p.created_at AND a.channel_id = ANY(%(channels)s)
WHERE p.captured_at >= %(start)s AND p.captured_at < %(end)s AND p.channel_id = ANY(%(channels)s)
  AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s AND p.amount_captured > 0
  AND (a.status = 'captured' OR (a.status = 'reversed' AND a.error_code = ''))
UNION ALL
SELECT 'reversal', a.reference, NULLIF(a.channel_reference, ''), p.currency, -p.amount_captured, 'success',
       p.canceled_at, p.id, NULL, NULL, false
FROM {payment} p JOIN {attempt} a
  ON a.intent_id = p.id AND a.intent_created_at = p.created_at AND a.channel_id = ANY(%(channels)s)
WHERE p.captured_at >= %(start)s - interval '7 days' AND p.captured_at < %(end)s
  AND p.created_at >= %(reversed_from)s AND p.created_at < %(created_to)s
  AND p.canceled_at >= %(start)s AND p.canceled_at < %(end)s AND p.channel_id = ANY(%(channels)s)
  AND p.amount_captured > 0 AND a.status = 'reversed' AND a.error_code = ''
UNION ALL
SELECT 'refund', r.reference, NULLIF(r.channel_reference, ''), p.currency, -r.amount, 'success', r.completed_at,
       p.id, r.id, NULL, false
FROM {refund} r JOIN {payment} p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
WHERE r.business_date = %(our_date)s AND r.status = 'succeeded' AND r.completed_at >= %(start)s
  AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
  AND r.completed_at < %(end)s AND p.channel_id = ANY(%(channels)s) AND r.channel_reference NOT LIKE 'recon:%%'
UNION ALL
SELECT 'payout', po.reference, NULL, po.currency, po.amount,
       CASE WHEN po.status = 'returned' THEN 'returned' ELSE 'success' END, po.sent_at, NULL, NULL, po.id, false
FROM {payout} po
WHERE po.status IN ('sent', 'paid', 'returned') AND po.sent_at >= %(start)s AND po.sent_at < %(end)s
  AND po.channel_id = ANY(%(channels)s)
UNION ALL
-- attempts reversed after a timeout (冲正): the channel may list a capture and its reversal, or nothing
SELECT k.kind, a.reference, NULL, a.currency, k.sign * a.amount, 'success', a.created_at, a.intent_id, NULL, NULL,
       true
FROM {attempt} a CROSS JOIN (VALUES ('capture', 1), ('reversal', -1)) k (kind, sign)
WHERE a.created_at >= %(start)s - interval '1 hour' AND a.created_at < %(end)s AND a.status = 'reversed'
  AND a.error_code <> '' AND a.channel_id = ANY(%(channels)s)
) ours
"""

# Each side's row at most once: first by our reference, then by the channel's id for a row without our reference,
# then rows with neither by currency, amount and nearest time (pairs that are each other's nearest). A pair's class
# and amounts are written with it, so that the matched half million are never joined again.
_CLASS = """CASE WHEN t.status <> o.status THEN 'status_mismatch' WHEN t.amount <> o.amount THEN 'amount_mismatch'
                 ELSE 'matched' END AS class, o.kind, o.currency, o.amount AS our_amount, t.amount AS their_amount,
            o.status AS our_status, t.status AS their_status, o.payment_id, o.refund_id, o.payout_id,
            CASE WHEN t.status <> o.status OR t.amount <> o.amount THEN COALESCE(o.ref, t.ref) END AS ref,
            CASE WHEN t.status <> o.status OR t.amount <> o.amount THEN COALESCE(t.txn, o.txn) END AS txn,
            t.at"""
_PAIRS = [
    f"""
    CREATE TEMP TABLE recon_pairs ON COMMIT DROP AS
    SELECT t.line, o.oid, {_CLASS} FROM recon_rows t JOIN recon_ours o ON o.kind = t.kind AND o.ref = t.ref
    """,  # noqa: S608 - constants only
    "CREATE UNIQUE INDEX ON recon_pairs (oid)",
    "CREATE UNIQUE INDEX ON recon_pairs (line)",
    f"""
    INSERT INTO recon_pairs
    SELECT DISTINCT ON (o.oid) t.line, o.oid, {_CLASS}
    FROM recon_rows t JOIN recon_ours o ON o.kind = t.kind AND o.txn = t.txn
    WHERE t.ref IS NULL AND NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.oid = o.oid)
    ORDER BY o.oid, t.line
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - constants only
    f"""
    INSERT INTO recon_pairs
    WITH candidates AS (
      SELECT t.line, o.oid, abs(extract(epoch FROM t.at - o.at)) AS gap
      FROM recon_rows t JOIN recon_ours o
        ON o.kind = t.kind AND o.currency = t.currency AND o.amount = t.amount
       AND o.at BETWEEN t.at - %(window)s AND t.at + %(window)s
      WHERE t.ref IS NULL AND t.at IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.line = t.line)
        AND NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.oid = o.oid)
    ), ranked AS (
      SELECT line, oid, row_number() OVER (PARTITION BY line ORDER BY gap, oid) AS by_line,
             row_number() OVER (PARTITION BY oid ORDER BY gap, line) AS by_ours
      FROM candidates
    )
    SELECT t.line, o.oid, {_CLASS}
    FROM ranked r JOIN recon_rows t ON t.line = r.line JOIN recon_ours o ON o.oid = r.oid
    WHERE r.by_line = 1 AND r.by_ours = 1
    ON CONFLICT DO NOTHING
    """,  # noqa: S608 - constants only
]

# The differences (the matched stay in recon_pairs, which carries what a difference needs: no join back), each with
# the key of its exception: the channel, the day, the class, the type and the row, never the file.
_RESULT = """
CREATE TEMP TABLE recon_result ON COMMIT DROP AS
SELECT r.*, %(channel)s || ':' || %(day)s || ':' || r.class || ':' || r.kind || ':'
            || COALESCE(r.ref, 'txn:' || r.txn, 'at:' || r.currency || r.their_amount || '@' || r.at::text, '') AS key
FROM (
SELECT p.class, p.kind, p.ref, p.txn, p.currency, p.our_amount, p.their_amount, p.our_status, p.their_status,
       p.payment_id, p.refund_id, p.payout_id, 0::bigint AS copies, p.at
FROM recon_pairs p
WHERE p.class <> 'matched'
UNION ALL
SELECT 'missing_with_us', t.kind, t.ref, t.txn, t.currency, NULL, t.amount, '', t.status, NULL, NULL, NULL, 0, t.at
FROM recon_rows t
WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.line = t.line) AND t.status <> 'failed'
UNION ALL
SELECT 'missing_at_channel', o.kind, o.ref, o.txn, o.currency, o.amount, NULL, o.status, '', o.payment_id,
       o.refund_id, o.payout_id, 0, o.at
FROM recon_ours o
WHERE NOT o.optional AND NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.oid = o.oid)
UNION ALL
SELECT 'duplicate', d.kind, t.ref, d.txn, t.currency, p.our_amount, t.amount, COALESCE(p.our_status, ''), t.status,
       p.payment_id, p.refund_id, p.payout_id, d.copies, t.at
FROM recon_dups d
JOIN recon_rows t ON t.line = d.first
LEFT JOIN LATERAL (SELECT * FROM recon_pairs p WHERE p.line = d.first) p ON true
) r
"""

_SUMMARY = """
SELECT class, kind, currency, count(*), COALESCE(sum(their_amount), 0), COALESCE(sum(our_amount), 0)
FROM (SELECT class, kind, currency, their_amount, our_amount FROM recon_pairs WHERE class = 'matched'
      UNION ALL
      SELECT class, kind, currency, their_amount, our_amount FROM recon_result) every
GROUP BY class, kind, currency ORDER BY class, kind, currency
"""

# One exception per problem: the key (`recon_result.key`) names the problem, never the file, so a re-import or a
# corrected file finds the exception it raised before. The table's key is (key, payment_created_at) (partitioned by
# the payment's month, payments/migrations/0054): the class and the row name the payment, or none, but a duplicate's
# is the payment its first copy paired with, if any, which our data may have changed since: a duplicate first takes
# the payment (and so the month) of the exception already raised under its key (`_DUPLICATES`, a statement of its
# own: probing the table it inserts into, the upsert would read the rows it writes), and keeps it, as an upsert never
# changes it.
_DUPLICATES = """
UPDATE recon_result r SET payment_id = e.payment_id, refund_id = e.refund_id
FROM {exception} e
WHERE r.class = 'duplicate' AND e.key = r.key
"""
_EXCEPTIONS = """
WITH upserted AS (
  INSERT INTO {exception} (
    public_id, key, channel_id, business_date, statement_id, kind, txn_kind, reference, channel_txn_id, payment_id,
    payment_created_at, refund_id, payout_id, currency, our_amount, channel_amount, our_status, channel_status, copies,
    holds_settlement, status, resolution, note, write_off_amount, write_off_transaction_id, resolved_by_id,
    resolved_at, created_at, updated_at)
  SELECT 'rex_' || translate(encode(uuid_send(gen_random_uuid())
                                    || substring(uuid_send(gen_random_uuid()) FROM 1 FOR 2), 'base64'), '+/', 'xy'),
         r.key, %(channel)s, %(day)s, %(statement)s, r.class, r.kind, COALESCE(r.ref, ''), COALESCE(r.txn, ''),
         r.payment_id, (SELECT p.created_at FROM {payment} p WHERE p.id = r.payment_id), r.refund_id, r.payout_id,
         r.currency, r.our_amount, r.their_amount, r.our_status,
         r.their_status, r.copies,
         r.class = ANY(%(holding)s) AND (r.kind = 'capture' OR r.kind = 'refund')
           AND (r.payment_id IS NOT NULL OR r.refund_id IS NOT NULL),
         'open', '', '', NULL, NULL, NULL, NULL, now(), now()
  FROM recon_result r WHERE r.class <> 'matched'
  ON CONFLICT (key, payment_created_at) DO UPDATE SET
    statement_id = EXCLUDED.statement_id, our_amount = EXCLUDED.our_amount, channel_amount = EXCLUDED.channel_amount,
    our_status = EXCLUDED.our_status, channel_status = EXCLUDED.channel_status, copies = EXCLUDED.copies,
    status = CASE WHEN {exception}.status = 'superseded' THEN 'open' ELSE {exception}.status END,
    resolved_at = CASE WHEN {exception}.status = 'superseded' THEN NULL ELSE {exception}.resolved_at END,
    updated_at = now()
  RETURNING 1
)
SELECT count(*) FROM upserted
"""

# What an earlier file of the day raised and this one no longer shows (and a "statement late" once the file came).
_SUPERSEDE = """
UPDATE {exception} SET status = 'superseded', resolved_at = now(), updated_at = now()
WHERE channel_id = %(channel)s AND business_date = %(day)s AND status = 'open'
  AND statement_id IS DISTINCT FROM %(statement)s
"""


def _dispute_arrived(exception: ReconciliationException) -> tuple[bool, str]:
    """A channel's dispute we did not have: its feed read again (the dispute poll, outside any transaction); it agrees
    once the dispute is ours."""
    channel = exception.channel
    disputes_poll(channel=channel)
    found = Dispute.objects.filter(
        channel_id__in=statement_channels(channel), channel_reference=exception.channel_txn_id
    ).first()
    if found is None:
        return False, _("no notice of dispute %(id)s in the feed") % {"id": exception.channel_txn_id}
    return True, _("dispute %(id)s received (%(status)s)") % {"id": found.public_id, "status": found.status}


# --- the dispute rows' pass -------------------------------------------------------------------------------------------
#
# A statement's dispute rows (`recon_disputes`: a dispute opened that day, or decided won or lost) against our
# disputes of the statement's channels: by the channel's dispute id, else (a dispute we opened by hand, which has no
# channel id) by our payment's reference and the kind. Ours are looked for among every dispute a row names and every
# one opened or closed in the window; a row is the dispute's opening (stage `opened`) or its decision (`decided`), and
# ours has both stages. Classes: matched; `dispute_missing` (the channel's dispute is not ours: its notice never came);
# `status_mismatch` (a decision the other way, or one we have not had); `amount_mismatch`; `missing_at_channel` (a
# dispute the channel opened, or decided, in the window by our record, which its statement does not list); and
# `duplicate` (a row listed twice).

_DISPUTE_TABLES = ("recon_disputes", "recon_dispute_rows", "recon_dispute_ours", "recon_dispute_pairs",
                   "recon_dispute_result")  # fmt: skip
# Our status of a dispute as a statement would list it, and the signed amount of its row of that stage.
_OUR_OUTCOME = """CASE WHEN d.status = 'won' THEN 'won' WHEN d.status IN ('lost', 'accepted', 'expired') THEN 'lost'
                       ELSE 'opened' END"""
_OUR_SIGNED = """CASE WHEN o.stage = 'decided' AND o.outcome = 'lost' AND o.kind <> 'retrieval' THEN -o.amount
                      ELSE o.amount END"""
_DISPUTE_PASS = [
    """
    CREATE TEMP TABLE recon_dispute_rows ON COMMIT DROP AS
    SELECT min(line) AS line, kind, CASE WHEN status = 'opened' THEN 'opened' ELSE 'decided' END AS stage, status, ref,
           txn, currency, amount, count(*) AS copies, min(at) AS at
    FROM recon_disputes GROUP BY kind, status, ref, txn, currency, amount
    """,
    f"""
    CREATE TEMP TABLE recon_dispute_ours ON COMMIT DROP AS
    SELECT row_number() OVER (ORDER BY d.id, s.stage) AS oid, d.id AS dispute_id, d.kind, s.stage,
           NULLIF(d.channel_reference, '') AS txn, a.reference AS ref, d.currency, d.payment_id,
           {_OUR_OUTCOME} AS outcome, d.amount,
           CASE WHEN s.stage = 'opened'
                THEN d.opened_by = 'channel' AND d.channel_reference <> ''
                     AND d.created_at >= %(start)s AND d.created_at < %(end)s
                ELSE d.channel_reference <> '' AND d.status IN ('won', 'lost')
                     AND d.closed_at >= %(start)s AND d.closed_at < %(end)s END AS expected,
           CASE WHEN s.stage = 'opened' THEN d.created_at ELSE d.closed_at END AS at
    FROM {{dispute}} d
    CROSS JOIN (VALUES ('opened'), ('decided')) s (stage)
    LEFT JOIN LATERAL (SELECT a.reference FROM {{payment}} p JOIN {{attempt}} a
                         ON a.intent_id = p.id AND a.intent_created_at = p.created_at
                       WHERE p.id = d.payment_id AND p.created_at = d.payment_created_at
                         AND a.channel_id = ANY(%(channels)s) AND a.status = 'captured'
                       ORDER BY a.id DESC LIMIT 1) a ON true
    WHERE d.channel_id = ANY(%(channels)s)
      AND (d.channel_reference IN (SELECT txn FROM recon_disputes WHERE txn IS NOT NULL)
           OR d.payment_id IN (SELECT a.intent_id FROM {{attempt}} a JOIN recon_disputes t ON t.ref = a.reference
                               WHERE a.channel_id = ANY(%(channels)s))
           OR (d.created_at >= %(start)s AND d.created_at < %(end)s)
           OR (d.closed_at >= %(start)s AND d.closed_at < %(end)s))
    """,  # noqa: S608 - constants only
    """
    CREATE TEMP TABLE recon_dispute_pairs ON COMMIT DROP AS
    SELECT DISTINCT ON (t.line) t.line, o.oid
    FROM recon_dispute_rows t JOIN recon_dispute_ours o ON o.kind = t.kind AND o.stage = t.stage AND o.txn = t.txn
    ORDER BY t.line, o.oid
    """,
    """
    INSERT INTO recon_dispute_pairs
    SELECT DISTINCT ON (oid) line, oid FROM (
      SELECT DISTINCT ON (t.line) t.line, o.oid
      FROM recon_dispute_rows t JOIN recon_dispute_ours o ON o.kind = t.kind AND o.stage = t.stage AND o.ref = t.ref
      WHERE (o.txn IS NULL OR t.txn IS NULL)
        AND NOT EXISTS (SELECT 1 FROM recon_dispute_pairs p WHERE p.line = t.line)
        AND NOT EXISTS (SELECT 1 FROM recon_dispute_pairs p WHERE p.oid = o.oid)
      ORDER BY t.line, o.oid
    ) by_line ORDER BY oid, line
    """,
    f"""
    CREATE TEMP TABLE recon_dispute_result ON COMMIT DROP AS
    SELECT CASE WHEN t.stage = 'decided' AND t.status <> o.outcome THEN 'status_mismatch'
                WHEN t.amount <> {_OUR_SIGNED} THEN 'amount_mismatch' ELSE 'matched' END AS class,
           t.kind, t.stage, COALESCE(t.ref, o.ref) AS ref, COALESCE(t.txn, o.txn) AS txn, t.currency,
           {_OUR_SIGNED} AS our_amount, t.amount AS their_amount,
           CASE WHEN t.stage = 'opened' THEN 'opened' ELSE o.outcome END AS our_status, t.status AS their_status,
           o.payment_id, 0::bigint AS copies, t.at
    FROM recon_dispute_pairs p JOIN recon_dispute_rows t ON t.line = p.line JOIN recon_dispute_ours o ON o.oid = p.oid
    UNION ALL
    SELECT 'dispute_missing', t.kind, t.stage, t.ref, t.txn, t.currency, NULL, t.amount, '', t.status,
           (SELECT a.intent_id FROM {{attempt}} a WHERE a.reference = t.ref AND a.channel_id = ANY(%(channels)s)
            ORDER BY a.id DESC LIMIT 1),
           0, t.at
    FROM recon_dispute_rows t WHERE NOT EXISTS (SELECT 1 FROM recon_dispute_pairs p WHERE p.line = t.line)
    UNION ALL
    SELECT 'missing_at_channel', o.kind, o.stage, o.ref, o.txn, o.currency, {_OUR_SIGNED}, NULL,
           CASE WHEN o.stage = 'opened' THEN 'opened' ELSE o.outcome END, '', o.payment_id, 0, o.at
    FROM recon_dispute_ours o
    WHERE o.expected AND NOT EXISTS (SELECT 1 FROM recon_dispute_pairs p WHERE p.oid = o.oid)
    UNION ALL
    SELECT 'duplicate', t.kind, t.stage, t.ref, t.txn, t.currency, NULL, t.amount, '', t.status, NULL, t.copies, t.at
    FROM recon_dispute_rows t WHERE t.copies > 1
    """,  # noqa: S608 - constants only
]
_DISPUTE_SUMMARY = """
SELECT class, kind, currency, count(*), COALESCE(sum(their_amount), 0), COALESCE(sum(our_amount), 0)
FROM recon_dispute_result GROUP BY class, kind, currency ORDER BY class, kind, currency
"""
# Keyed as the payment rows' exceptions are, with the row's stage and the channel's dispute id (else our reference):
# a dispute's opening and its decision are two problems. A later file may name another payment under a key (a
# `dispute_missing` by the channel's id: the payment our reference on the row finds): the exception raised before is
# moved to that payment's month first (`_DISPUTE_MOVES`, an UPDATE moves the row across partitions; an upsert may
# not), then the upsert finds it by (key, payment_created_at) and names the payment.
_DISPUTE_ROWS = """
SELECT %(channel)s || ':' || %(day)s || ':' || r.class || ':' || r.kind || ':' || r.stage || ':'
         || COALESCE('txn:' || r.txn, r.ref, '') AS key,
       r.*, (SELECT p.created_at FROM {payment} p WHERE p.id = r.payment_id) AS payment_created_at
FROM recon_dispute_result r WHERE r.class <> 'matched'
"""
_DISPUTE_MOVES = (
    """
UPDATE {exception} e SET payment_id = r.payment_id, payment_created_at = r.payment_created_at, updated_at = now()
FROM ("""
    + _DISPUTE_ROWS
    + """) r
WHERE e.key = r.key AND e.payment_created_at IS DISTINCT FROM r.payment_created_at
"""
)
_DISPUTE_EXCEPTIONS = (
    """
INSERT INTO {exception} (
  public_id, key, channel_id, business_date, statement_id, kind, txn_kind, reference, channel_txn_id, payment_id,
  payment_created_at, currency, our_amount, channel_amount, our_status, channel_status, copies, holds_settlement,
  status, resolution, note, created_at, updated_at)
SELECT 'rex_' || translate(encode(uuid_send(gen_random_uuid())
                                  || substring(uuid_send(gen_random_uuid()) FROM 1 FOR 2), 'base64'), '+/', 'xy'),
       r.key, %(channel)s, %(day)s, %(statement)s, r.class, r.kind, COALESCE(r.ref, ''), COALESCE(r.txn, ''),
       r.payment_id, r.payment_created_at, r.currency, r.our_amount, r.their_amount,
       r.our_status, r.their_status, r.copies, false, 'open', '', '', now(), now()
FROM ("""
    + _DISPUTE_ROWS
    + """) r
ON CONFLICT (key, payment_created_at) DO UPDATE SET
  statement_id = EXCLUDED.statement_id, our_amount = EXCLUDED.our_amount, channel_amount = EXCLUDED.channel_amount,
  our_status = EXCLUDED.our_status, channel_status = EXCLUDED.channel_status, copies = EXCLUDED.copies,
  payment_id = EXCLUDED.payment_id,
  status = CASE WHEN {exception}.status = 'superseded' THEN 'open' ELSE {exception}.status END,
  resolved_at = CASE WHEN {exception}.status = 'superseded' THEN NULL ELSE {exception}.resolved_at END,
  updated_at = now()
"""
)


def _our_windows(channel: Channel, day: dt.date) -> dict[str, Any]:
    """What a statement of `channel`'s `day` reads on our side: its window, our business date, and the months our
    payments and refunds can be in (the capture and refund windows, payments/windows.py; a reversal's payment up to
    a week older). `_match`'s parameters, and what `_refuse_archived_day` checks."""
    start, end = statement_window(channel, day)
    our_date = load_calendar().working_day_on_or_after(day)
    created_from, created_to = payments_created_for_captures(start, end)
    refunds_from, refunds_to = refunds_created_for(our_date, our_date)
    return {
        "start": start,
        "end": end,
        "our_date": our_date,
        "created_from": created_from,
        "created_to": created_to,
        "reversed_from": payments_created_for_captures(start - dt.timedelta(days=7), end)[0],
        "refunds_from": refunds_from,
        "refunds_to": refunds_to,
    }


def _refuse_archived_day(channel: Channel, day: dt.date) -> None:
    """Refuses a statement whose day reads a month of our payments or refunds that was archived (`PeriodArchived`):
    every row of it would be raised as missing on our side."""
    w = _our_windows(channel, day)
    tables = [PaymentIntent._meta.db_table, Refund._meta.db_table]
    refuse_archived(tables, w["reversed_from"], w["created_to"], param="day")
    refuse_archived(tables, w["refunds_from"], w["refunds_to"], param="day")


def _match(imported: StatementImport, channel: Channel, day: dt.date) -> dict[str, Any]:
    """Matches the import's rows against ours and writes its exceptions; returns the summary."""
    params: dict[str, Any] = {
        **_our_windows(channel, day),
        "statement": imported.pk,
        "channel": channel.pk,
        "channels": statement_channels(channel),
        "day": day,
        "window": dt.timedelta(seconds=settings.RECON_TIME_WINDOW_SECONDS),
        "holding": [str(c) for c in HOLDING],
    }
    tables = _tables()
    with connection.cursor() as cursor:

        def run(statement: str) -> None:
            began = time.perf_counter()
            cursor.execute(sql.SQL(statement).format(**tables), params)
            logger.debug("%.3f s %s", time.perf_counter() - began, " ".join(statement.split())[:60])

        for name in ("recon_ours", "recon_pairs", "recon_result", *_DISPUTE_TABLES[1:]):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
        run(_OURS)
        cursor.execute("ANALYZE recon_ours")  # recon_rows was analysed as it was loaded
        for statement in _PAIRS:
            run(statement)
        cursor.execute("ANALYZE recon_pairs")
        run(_RESULT)
        run(_SUMMARY)
        rows = cursor.fetchall()
        run(_DUPLICATES)
        run(_EXCEPTIONS)
        # The dispute rows' own pass: a few rows against our disputes, after the payment rows' tables are done with.
        for name in ("recon_ours", "recon_rows", "recon_dups", "recon_pairs", "recon_result"):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
        for statement in _DISPUTE_PASS:
            run(statement)
        run(_DISPUTE_SUMMARY)
        rows += cursor.fetchall()
        run(_DISPUTE_MOVES)
        run(_DISPUTE_EXCEPTIONS)
        run(_SUPERSEDE)
        for name in _DISPUTE_TABLES:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
    return _summary(rows)


def _summary(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """{class: {"count": n, "by": [{"kind", "currency", "count", "channel_amount", "our_amount"}]}} for every class."""
    summary: dict[str, Any] = {name: {"count": 0, "by": []} for name in CLASSES}
    for klass, kind, currency, count, theirs, ours in rows:
        entry = summary.setdefault(klass, {"count": 0, "by": []})
        entry["count"] += count
        entry["by"].append(
            {"kind": kind, "currency": currency, "count": count, "channel_amount": int(theirs), "our_amount": int(ours)}
        )
    return summary


def _counts(summary: dict[str, Any]) -> dict[str, int]:
    return {name: entry["count"] for name, entry in summary.items()}


# --- fetching: the job ---------------------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    fetched: int = 0
    waiting: int = 0
    late: int = 0
    failed: int = 0
    skipped: int = 0


def reconcile_channel_day(
    *, channel: Channel, day: dt.date, text: str | None = None, fmt: str = "", actor: Any = None,
    echo: IO[str] | None = None, now: dt.datetime | None = None,
) -> ImportResult | None:  # fmt: skip
    """Reconciles `channel`'s business date `day`: the file given, or the channel's statement fetched through its
    connector. A file that is not ready yet is asked for again later with back-off (None is returned), counted from
    `now` (the job's clock); after RECON_LATE_MAX_ATTEMPTS attempts the day gets a "statement late" exception."""
    with job_run("payments.reconcile", period=f"{channel.code}:{day.isoformat()}", echo=echo) as run:
        fetch, _created = StatementFetch.objects.get_or_create(channel=channel, business_date=day)
        if text is None:
            connector = get_connector(channel.connector)
            answer = connector.statement(remote_key(channel), day)
            if answer.outcome != Outcome.APPROVED:
                _not_ready(fetch, channel, day, answer.code or "no_answer", now or timezone.now())
                run.advance(1, waiting=1)
                return None
            text, fmt = answer.text, fmt or answer.format
        result = statement_import(channel=channel, day=day, text=text, fmt=fmt, actor=actor)
        StatementFetch.objects.filter(pk=fetch.pk).update(
            status=StatementFetch.Status.FETCHED, attempts=F("attempts") + 1, next_attempt_at=None, last_error="",
            updated_at=timezone.now(),
        )  # fmt: skip
        run.advance(1, rows=result.statement.rows, **_counts(result.summary))
        return result


def _not_ready(fetch: StatementFetch, channel: Channel, day: dt.date, code: str, now: dt.datetime) -> None:
    attempts = fetch.attempts + 1
    with transaction.atomic():
        if attempts >= settings.RECON_LATE_MAX_ATTEMPTS:
            StatementFetch.objects.filter(pk=fetch.pk).update(
                status=StatementFetch.Status.LATE, attempts=attempts, next_attempt_at=None, last_error=code[:200],
                updated_at=timezone.now(),
            )  # fmt: skip
            exception, created = Exc.objects.get_or_create(  # names no payment: the key's month is empty
                key=f"{channel.pk}:{day.isoformat()}:{ReconClass.STATEMENT_LATE}::",
                payment_created_at=None,
                defaults={
                    "channel": channel,
                    "business_date": day,
                    "kind": ReconClass.STATEMENT_LATE,
                    "note": _("No statement after %(attempts)d attempts (%(code)s).")
                    % {"attempts": attempts, "code": code},
                },
            )
            if created:
                audit_record(actor=None, action="reconciliation.statement_late", obj=exception,
                             bank_id=channel.acquirer_id)  # fmt: skip
            return
        delay = dt.timedelta(minutes=settings.RECON_LATE_RETRY_MINUTES * 2 ** (attempts - 1))
        StatementFetch.objects.filter(pk=fetch.pk).update(
            status=StatementFetch.Status.WAITING, attempts=attempts, next_attempt_at=now + delay,
            last_error=code[:200], updated_at=timezone.now(),
        )  # fmt: skip


def reconcile_due(*, now: dt.datetime | None = None) -> ReconcileReport:
    """Every enabled live channel's days whose statement is due (RECON_FETCH_AFTER_MINUTES after the cut-off that
    ends them, in the last RECON_LOOKBACK_DAYS) and not fetched yet, unless a late file's next attempt is not due."""
    now = now or timezone.now()
    report = ReconcileReport()
    seen: set[tuple[str, str]] = set()
    grace = dt.timedelta(minutes=settings.RECON_FETCH_AFTER_MINUTES)
    today = now.astimezone(SHANGHAI).date()
    since = today - dt.timedelta(days=settings.RECON_LOOKBACK_DAYS)
    fetches = {(f.channel_id, f.business_date): f for f in StatementFetch.objects.filter(business_date__gte=since)}
    for channel in Channel.objects.filter(enabled=True, sandbox=False).select_related("acquirer").order_by("pk"):
        if (channel.connector, remote_key(channel)) in seen:
            continue  # one statement per remote channel
        seen.add((channel.connector, remote_key(channel)))
        for back in range(settings.RECON_LOOKBACK_DAYS, -1, -1):
            day = today - dt.timedelta(days=back)
            if now < statement_window(channel, day)[1] + grace:
                continue
            fetch = fetches.get((channel.pk, day))
            if fetch is not None and (
                fetch.status != StatementFetch.Status.WAITING
                or (fetch.next_attempt_at is not None and fetch.next_attempt_at > now)
            ):
                report.skipped += 1
                continue
            try:
                result = reconcile_channel_day(channel=channel, day=day, now=now)
            except (ValidationFailed, Conflict):
                logger.exception("statement of %s for %s refused", channel.code, day)
                report.failed += 1
                continue
            if result is not None:
                report.fetched += 1
            elif StatementFetch.objects.filter(channel=channel, business_date=day, status="late").exists():
                report.late += 1
            else:
                report.waiting += 1
    return report


# --- the queue's actions ----------------------------------------------------------------------------------------------


def _locked(exception_id: int) -> ReconciliationException:
    found = Exc.objects.select_for_update().select_related("channel").filter(pk=exception_id).first()
    if found is None:
        raise NotFound(_("No such reconciliation exception."), param="exception")
    return found


def _require_open(exception: ReconciliationException) -> None:
    """Open, and no write-off of it waiting for a second operator (that request is decided first)."""
    if exception.status != Exc.Status.OPEN:
        raise Conflict(
            _("This exception is %(status)s; nothing to do.") % {"status": exception.get_status_display()},
            code="exception_not_open",
        )
    if write_off_requests_pending(exception.pk).exists():
        raise Conflict(
            _("A write-off of this exception waits for a second operator: approve or reject it first."),
            code="write_off_pending",
        )


def _require_operator(operator: Any, exception: ReconciliationException) -> None:
    if getattr(operator, "pk", None) is None:
        raise PermissionDenied(_("Acting on a reconciliation exception takes an operator."), code="operator_required")
    require_operator_of(operator, exception.channel.acquirer_id)


def _resolve(exception: ReconciliationException, operator: Any, resolution: str, note: str, action: str) -> None:
    before = snapshot(exception)
    exception.status = Exc.Status.RESOLVED
    exception.resolution = resolution
    exception.resolved_by = operator if getattr(operator, "pk", None) else None
    exception.resolved_at = exception.updated_at = timezone.now()
    if note:
        exception.note = f"{exception.note}\n{note}".strip()
    exception.save()
    audit_record(
        actor=operator, action=action, obj=exception, before=before, after=snapshot(exception), reason=note,
        bank_id=exception.channel.acquirer_id,
    )  # fmt: skip


def _not_available(exception: ReconciliationException) -> Conflict:
    return Conflict(
        _("The channel's view cannot be taken over for a %(kind)s %(class)s: keep ours, write it off or ask again.")
        % {"kind": exception.txn_kind or "-", "class": exception.get_kind_display()},
        code="action_not_available",
    )


def exception_accept_channel(*, exception_id: int, operator: Any, note: str = "") -> ReconciliationException:
    """Takes the channel's statement as the truth, through the payments services (one transaction, audited):

    - a capture the channel does not have, or has as failed: the payment is reversed — cancelled, the points it
      earned and spent given back, its promotions and fee handed back, `payment.canceled` sent — unless it was
      settled or refunded already (refused: write it off);
    - a capture the channel has for less: the difference is recorded as a correction refund (points, fee and
      promotions handed back in proportion, `refund.succeeded`, settled as any refund); for more: refused (the
      cardholder was overcharged — keep ours and flag it);
    - a payout the channel returned or failed: the payout returned, its batch `returned`, sent again once fixed;
    - a channel's dispute whose notice never reached us (`dispute_missing`): the dispute is opened from the
      statement's row, under the channel's dispute id, so that the notice, when it comes, finds it;
    - anything else (a refund, a reversal, a duplicate, a row we never sent): refused, `action_not_available`.
    """
    with transaction.atomic():
        exception = _locked(exception_id)
        _require_open(exception)
        _require_operator(operator, exception)
        kind, klass = exception.txn_kind, exception.kind
        if (
            kind == "capture"
            and exception.payment_id
            and (
                klass == ReconClass.MISSING_AT_CHANNEL
                or (klass == ReconClass.STATUS_MISMATCH and exception.channel_status == "failed")
            )
        ):
            effect = _reverse_payment(exception)
        elif kind == "capture" and exception.payment_id and klass == ReconClass.AMOUNT_MISMATCH:
            effect = _correct_amount(exception)
        elif klass == ReconClass.DISPUTE_MISSING and exception.payment_id and exception.channel_txn_id:
            effect = _open_missing_dispute(exception, operator)
        elif kind == "payout" and exception.payout_id and klass == ReconClass.STATUS_MISMATCH:
            payout = Payout.objects.select_related("channel").get(pk=exception.payout_id)
            payout_returned_at_channel(payout, reason=f"statement: {exception.channel_status}")
            effect = _("Payout %(payout)s returned.") % {"payout": payout.public_id}
        else:
            raise _not_available(exception)
        _resolve(exception, operator, Exc.Resolution.ACCEPT_CHANNEL, f"{effect} {note}".strip(),
                 "reconciliation.accept_channel")  # fmt: skip
    return exception


def _open_missing_dispute(exception: ReconciliationException, operator: Any) -> str:
    """The channel's dispute as its statement lists it: opened now under the channel's dispute id (its deadline
    counted from today), for the disputed amount (a lost one's row shows the debit: the same amount)."""
    assert exception.payment_id is not None
    assert exception.payment_created_at is not None  # set with the payment (a check)
    payment = PaymentIntent.objects.get(pk=exception.payment_id, created_at=exception.payment_created_at)
    dispute = dispute_open(
        payment=payment,
        kind=exception.txn_kind,
        amount=abs(exception.channel_amount or 0),
        opened_by=Dispute.OpenedBy.CHANNEL,
        actor=operator,
        channel_reference=exception.channel_txn_id,
    )
    return _("Dispute %(dispute)s opened from the statement.") % {"dispute": dispute.public_id}


def _reverse_payment(exception: ReconciliationException) -> str:
    assert exception.payment_id is not None
    assert exception.payment_created_at is not None  # set with the payment (a check)
    intent = PaymentIntent.objects.select_related("channel", "merchant").get(
        pk=exception.payment_id, created_at=exception.payment_created_at
    )
    if intent.status != Status.SUCCEEDED or intent.amount_refund_reserved or on_a_line(intent):
        raise Conflict(
            _("Payment %(payment)s was settled, refunded or changed since: it cannot be reversed here; write the "
              "difference off instead.") % {"payment": intent.public_id},
            code="payment_not_reversible",
        )  # fmt: skip
    moved = (
        PaymentIntent.objects.one(intent)
        .filter(status=Status.SUCCEEDED, amount_refund_reserved=0)
        .update(status=Status.PROCESSING, updated_at=timezone.now())
    )
    if not moved:
        raise Conflict(_("The payment changed meanwhile; try again."), code="payment_unexpected_state")
    attempt = PaymentAttempt.objects.of(intent).filter(status=AttemptStatus.CAPTURED).select_related("channel").get()
    intent.status = Status.PROCESSING
    cancel_finish(intent, attempt, "reconciliation")
    return _("Payment %(payment)s reversed as the channel did not capture it.") % {"payment": intent.public_id}


def _correct_amount(exception: ReconciliationException) -> str:
    ours, theirs = exception.our_amount or 0, exception.channel_amount or 0
    if not 0 < theirs < ours:
        raise Conflict(
            _("The channel has %(theirs)d for our %(ours)d: only a smaller amount can be taken over (a correction "
              "refund of the difference).") % {"theirs": theirs, "ours": ours},
            code="action_not_available",
        )  # fmt: skip
    assert exception.payment_id is not None
    assert exception.payment_created_at is not None  # set with the payment (a check)
    intent = PaymentIntent.objects.select_related("channel", "merchant").get(
        pk=exception.payment_id, created_at=exception.payment_created_at
    )
    refund = refund_correction(intent, ours - theirs, reason=f"reconciliation {exception.public_id}")
    return _("Correction refund %(refund)s of %(amount)d recorded.") % {
        "refund": refund.public_id,
        "amount": ours - theirs,
    }


def exception_accept_ours(*, exception_id: int, operator: Any, note: str = "") -> ReconciliationException:
    """Keeps our record: the exception is closed and flagged for the channel with the note (what to correct on its
    side). Nothing of the payment changes; a held payment or refund is released to settlement."""
    with transaction.atomic():
        exception = _locked(exception_id)
        _require_open(exception)
        _require_operator(operator, exception)
        flag = _("Flagged for the channel: our record stands.")
        _resolve(exception, operator, Exc.Resolution.ACCEPT_OURS, f"{flag} {note}".strip(),
                 "reconciliation.accept_ours")  # fmt: skip
    return exception


def write_off_amount(exception: ReconciliationException) -> int:
    """What a write-off of the exception takes, in minor units: the difference for an amount mismatch, the extra
    copies for a duplicate, the row's amount otherwise."""
    ours, theirs = exception.our_amount or 0, exception.channel_amount or 0
    if exception.kind == ReconClass.AMOUNT_MISMATCH:
        return abs(ours - theirs)
    if exception.kind == ReconClass.DUPLICATE:
        return abs(theirs) * max(exception.copies - 1, 1)
    return abs(ours or theirs)


def write_off_requests_pending(exception_id: int) -> QuerySet[ApprovalRequest]:
    """The requests to write this exception off still waiting in the approval queue (at most one)."""
    return ApprovalRequest.objects.filter(
        kind=WRITE_OFF,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
        payload__exception_id=exception_id,
    )


def write_off_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a write-off request: the exception and the amount. Run when asked and again when approved (the
    request itself is then no longer pending): the exception must still be open, in CNY, for the same amount."""
    pk = id_or_none(str(payload.get("exception_id")))
    if pk is None:
        raise NotFound(_("No such reconciliation exception."), param="exception")
    exception = _locked(pk)
    _require_open(exception)
    amount = write_off_amount(exception)
    if exception.currency != "CNY" or amount <= 0:
        raise ValidationFailed(
            _("Only a CNY difference can be written off to the ledger."), code="write_off_not_cny", param="currency"
        )
    if "amount" in payload and payload["amount"] != amount:
        raise Conflict(
            _("A later statement changed the difference since the request: ask again."),
            code="write_off_amount_changed",
        )
    return {
        "exception_id": exception.pk,
        "exception": exception.public_id,
        "reference": exception.reference or exception.channel_txn_id,
        "class": exception.kind,
        "bank_id": exception.channel.acquirer_id,
        "amount": amount,
        "currency": exception.currency,
    }


def write_off_bank(payload: dict[str, Any]) -> int | None:
    """The bank whose operator checks a write-off: the acquirer whose channel's statement raised the exception."""
    return Exc.objects.values_list("channel__acquirer_id", flat=True).get(pk=payload["exception_id"])


def write_off_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (_("reconciliation exception"), str(payload.get("exception", "-"))),
        (_("reference"), str(payload.get("reference") or "-")),
        (_("class"), str(ReconClass(payload["class"]).label) if payload.get("class") in ReconClass else "-"),
        (_("write-off"), money_text(int(payload.get("amount") or 0), str(payload.get("currency", "")))),
    ]


def write_off_apply(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> Any:
    """Posts the approved write-off (the kind's `apply`, inside the approval's transaction, after
    `write_off_validate`): the amount to the acquirer bank's loss account against its suspense account
    (`rewards.services.loss_post`, ten-thousandths of CNY), and the exception is resolved. The posting is the result."""
    exception = _locked(payload["exception_id"])
    _require_operator(checker, exception)
    amount = int(payload["amount"])
    txn = rewards_services.loss_post(
        bank=exception.channel.acquirer,
        units=amount * 100,
        idempotency_key=f"recon-write-off:{exception.public_id}",
        actor=checker,
        metadata={
            "exception": exception.public_id,
            "reference": exception.reference,
            "class": exception.kind,
            "requested_by": maker.pk,
        },
    )
    exception.write_off_amount, exception.write_off_transaction = amount, txn
    exception.write_off_transaction_created_at = txn.created_at
    written = _("Written off: %(amount)d (minor units).") % {"amount": amount}
    _resolve(exception, checker, Exc.Resolution.WRITE_OFF, written, "reconciliation.write_off")
    return txn


WRITE_OFF_KIND = ApprovalKind(
    code=WRITE_OFF,
    label=gettext_lazy("Write off a reconciliation difference"),
    permission=WRITE_OFF_PERMISSION,
    validate=write_off_validate,
    bank_of=write_off_bank,
    apply=write_off_apply,
    describe=write_off_describe,
)


def exception_write_off_request(*, exception_id: int, operator: Any, note: str = "") -> ApprovalRequest:
    """Asks for the difference to be written off (CNY only: the ledger keeps CNY): a request in the approval queue,
    which a second operator approves (`core.approvals.approval_approve`, or `exception_write_off_approve`). Until
    then the exception stays open and keeps holding."""
    with transaction.atomic():
        exception = _locked(exception_id)
        _require_open(exception)
        _require_operator(operator, exception)
        if not operator.has_perm(WRITE_OFF_PERMISSION):
            raise PermissionDenied(_("Your role may not write off differences."), code="write_off_not_allowed")
        reason = note.strip() or _("A reconciliation difference to write off.")
        return approval_request(kind=WRITE_OFF, payload={"exception_id": exception.pk}, reason=reason, maker=operator)


def exception_write_off_approve(*, exception_id: int, operator: Any) -> ReconciliationException:
    """The checker's half from the exception's own page: approves the write-off request waiting for it, through the
    approval queue (a different operator from its maker)."""
    request = write_off_requests_pending(exception_id).first()
    if request is None:
        raise Conflict(
            _("Ask for the write-off first: a second operator then approves it."), code="write_off_not_requested"
        )
    if request.maker_id == getattr(operator, "pk", None):
        raise PermissionDenied(
            _("A write-off is approved by a different operator from the one who asked for it."),
            code="second_operator_required",
        )
    approval_approve(request_id=request.pk, checker=operator)
    return Exc.objects.select_related("channel").get(pk=exception_id)


def exception_reinquire(*, exception_id: int, operator: Any = None) -> ReconciliationException:
    """Asks the channel again (outside any transaction) about the row: when its answer now agrees with our record,
    the exception is resolved; otherwise what it said is added to the note and the exception stays open."""
    exception = Exc.objects.select_related("channel").filter(pk=exception_id).first()
    if exception is None:
        raise NotFound(_("No such reconciliation exception."), param="exception")
    _require_open(exception)
    if operator is not None:
        _require_operator(operator, exception)
    agrees, said = _ask(exception)
    with transaction.atomic():
        exception = _locked(exception_id)
        _require_open(exception)
        if agrees:
            _resolve(exception, operator, Exc.Resolution.REINQUIRY, _("The channel now says: %(said)s.")
                     % {"said": said}, "reconciliation.reinquiry")  # fmt: skip
        else:
            exception.note = f"{exception.note}\n{timezone.now():%Y-%m-%d %H:%M} {said}".strip()
            exception.updated_at = timezone.now()
            exception.save(update_fields=["note", "updated_at"])
            audit_record(actor=operator, action="reconciliation.reinquiry", obj=exception, after={"said": said},
                         bank_id=exception.channel.acquirer_id)  # fmt: skip
    return exception


def _ask(exception: ReconciliationException) -> tuple[bool, str]:
    """(whether the channel's answer agrees with our record, what it said)."""
    channel = exception.channel
    connector = get_connector(channel.connector)
    remote = remote_key(channel)
    ours_absent = exception.kind == ReconClass.MISSING_WITH_US
    if exception.kind == ReconClass.DISPUTE_MISSING:
        return _dispute_arrived(exception)
    try:
        if exception.txn_kind in ("capture", "reversal") and exception.reference:
            inquiry = connector.inquire(ReferenceRequest(remote, exception.reference))
            if inquiry.outcome != Outcome.APPROVED:
                return False, "no answer"
            if ours_absent:
                return inquiry.state == RemoteState.NOT_FOUND, str(inquiry.state)
            if exception.txn_kind == "reversal":
                return inquiry.state in (RemoteState.REVERSED, RemoteState.VOIDED), str(inquiry.state)
            same = inquiry.state == RemoteState.CAPTURED and inquiry.amount_captured == (exception.our_amount or 0)
            return same, f"{inquiry.state} {inquiry.amount_captured}"
        if exception.txn_kind == "refund" and exception.refund_id and exception.payment_created_at:
            refund = Refund.objects.select_related("intent").get(  # the refund's month is its payment's
                pk=exception.refund_id, intent_created_at=exception.payment_created_at
            )
            attempt = PaymentAttempt.objects.of(refund.intent).filter(status=AttemptStatus.CAPTURED).first()
            request = RefundRequest(remote, attempt.reference if attempt else "", refund.reference, refund.amount,
                                    refund.intent.currency)  # fmt: skip
            inquiry = connector.refund_inquire(request)
            if inquiry.outcome != Outcome.APPROVED:
                return False, "no answer"
            return inquiry.state == RemoteState.REFUNDED, str(inquiry.state)
        if exception.txn_kind == "payout" and exception.reference:
            result = connector.payout_inquire(exception.reference)
            if result.outcome != Outcome.APPROVED:
                return False, "no answer"
            if ours_absent:
                return result.state == PayoutState.NOT_FOUND, str(result.state)
            expected = PayoutState.RETURNED if exception.our_status == "returned" else PayoutState.PAID
            return result.state == expected, str(result.state)
    except Exception:
        logger.exception("re-inquiry raised for %s", exception.public_id)
        return False, "no answer"
    return False, "nothing to ask the channel about"
