"""The simulator's own SQLite storage: one connection per thread, WAL, and write transactions serialised.

Every write runs under one process-wide lock *and* `BEGIN IMMEDIATE`, so a reader never sees half an operation and two
writers never interleave; balances are additionally guarded in SQL (`UPDATE ... WHERE balance - held >= ?`) and by
CHECK constraints, so an overdraft is impossible even if a code path forgot to look.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    reference TEXT NOT NULL,
    instrument_kind TEXT NOT NULL,
    instrument_ref TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    decline_code TEXT,
    auth_code TEXT,
    captured_amount INTEGER NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
    refunded_amount INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
    reversed_amount INTEGER NOT NULL DEFAULT 0 CHECK (reversed_amount >= 0),
    hold_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    captured_at TEXT,
    captured_business_date TEXT,
    UNIQUE (channel, reference)
);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    refund_reference TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    created_at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    UNIQUE (payment_id, refund_reference)
);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    holder TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at TEXT NOT NULL,
    CHECK (held <= balance)
);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    reference TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'captured', 'released')),
    captured_amount INTEGER NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (account_id, reference)
);
CREATE TABLE IF NOT EXISTS otps (
    reference TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    phone_hint TEXT NOT NULL,
    code TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'verified', 'locked', 'expired')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    verified_at TEXT
);
CREATE TABLE IF NOT EXISTS payouts (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    reference TEXT NOT NULL UNIQUE,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    account_last4 TEXT NOT NULL,
    account_token TEXT NOT NULL DEFAULT '',
    account_name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('accepted', 'paid', 'returned')),
    result TEXT NOT NULL CHECK (result IN ('paid', 'returned')),
    return_reason TEXT,
    due_at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    CHECK ((result = 'returned') = (return_reason IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    channel TEXT NOT NULL,
    op TEXT NOT NULL,
    reference TEXT,
    op_reference TEXT,
    request_id TEXT,
    key_id TEXT,
    object_id TEXT,
    amount INTEGER,
    currency TEXT,
    money INTEGER NOT NULL DEFAULT 0,
    fee INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    code TEXT
);
CREATE INDEX IF NOT EXISTS journal_channel_date ON journal (channel, business_date, seq);
CREATE INDEX IF NOT EXISTS journal_reference ON journal (reference);
CREATE TABLE IF NOT EXISTS clearing_instructions (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    reference TEXT NOT NULL UNIQUE,
    party TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('pay', 'receive')),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('accepted', 'confirmed', 'failed')),
    result TEXT NOT NULL CHECK (result IN ('confirmed', 'failed')),
    failure_reason TEXT,
    due_at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS disputes (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    reference TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('retrieval', 'chargeback', 'error_adjustment')),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    currency TEXT NOT NULL,
    reason_code TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('open', 'answered', 'won', 'lost')),
    planned_outcome TEXT NOT NULL CHECK (planned_outcome IN ('won', 'lost')),
    response_reference TEXT,
    response TEXT,
    answered_at TEXT,
    decide_at TEXT,
    decided_at TEXT,
    business_date TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS disputes_due ON disputes (state, decide_at);
CREATE TABLE IF NOT EXISTS dispute_notices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id TEXT NOT NULL REFERENCES disputes (id),
    channel TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('opened', 'answered', 'decided')),
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dispute_notices_channel ON dispute_notices (channel, seq);
CREATE TABLE IF NOT EXISTS statement_faults (
    channel TEXT NOT NULL,
    business_date TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (channel, business_date)
);
"""

TABLES = ("journal", "dispute_notices", "disputes", "refunds", "payments", "holds", "accounts", "otps", "payouts",
          "clearing_instructions", "statement_faults")  # fmt: skip


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.write_lock = threading.Lock()
        self._local = threading.local()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self.connection()
        conn.executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction: committed when the block ends, rolled back if it raises."""
        conn = self.connection()
        with self.write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def wipe(self) -> None:
        with self.write() as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            conn.execute("DELETE FROM sqlite_sequence WHERE name IN ('journal', 'dispute_notices')")
