"""Scale benchmark (PostgreSQL): the ledger's single postings and a day's settlement at 10× the data of their own
benchmarks, against the same work at 1×; and, where a Citus cluster answers, the ledger on Citus against one server.
Prints `BENCH scale ...` last.

    .venv/bin/python bench/scale.py [--factor 10] [--quick] [--skip-1x] [--skip-ledger] [--skip-settlement]
        [--skip-citus] [--ops N] [--rounds 3] [--no-check] [--chunk-merchants N] [--workers N] [--citus-url URL]
        [--redis URL|none] [--database NAME] [--keep]

1. The ledger: bench/ledger.py's wallets and its single-posting workers (8 processes alternating `points_earn` and
   `points_redeem`), `--rounds` rounds, the best kept, on a ledger already holding about 1,000,000 entries, then
   again once it holds about `--factor` times as many. The history is seeded by set-based SQL: a year of earns,
   each spent a day later, of 48 entries per cardholder wallet, the posting wallets among them; every transaction
   zero-sum per unit, every entry carrying its account's running balance, the balances, lots and lot movements
   matching, so that `ledger_check` (run at the end, without the seal chain) passes. When `rewards_entry` is
   partitioned, the history's months get their partitions from the platform's own function (core/partitions.py).
2. Settlement: bench/settlement.py in a subprocess (its own database) with `--factor` × 1,000,000 payments of
   `--factor` × 1,000 merchants, and with 1,000,000 of 1,000 (`--skip-1x` leaves that run out).
3. Citus: when the coordinator answers (`--citus-url`, default postgres://postgres@127.0.0.1:5440),
   bench/ledger_citus.py's `citus_vs_single`; otherwise `n/a`, the reason printed above.

`--quick`, for trying it out: 100,000 entries at 1× (1,000,000 at 10×), 20,000 payments of 200 merchants at 1×
(200,000 of 2,000 at 10×), 300 postings per worker. The ledger part's database is its own (bench/common.py), dropped
before the settlement runs, which make theirs.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from typing import Any

from common import ROOT, add_arguments, insert_columns, setup

BASE_ENTRIES = 1_000_000
BASE_PAYMENTS = 1_000_000
BASE_MERCHANTS = 1_000
QUICK_ENTRIES = 100_000
QUICK_PAYMENTS = 20_000
QUICK_MERCHANTS = 200
# The environment the run was started with: the subprocesses make databases of their own on the same server.
STARTING_ENVIRONMENT = dict(os.environ)
MONTHS = 12  # the history covers the past year: one earn and its spend a month per wallet
ENTRIES_PER_WALLET = MONTHS * 2 * 2  # two transactions a month, two entries each
SYNTHETIC_OWNERS = 1_000_000_000  # history wallets' cardholder ids start above any real one
CITUS_URL = "postgres://postgres@127.0.0.1:5440"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--factor", type=int, default=10, help="the larger data's multiple of the smaller (default 10)")
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer postings, for trying it out")
    parser.add_argument("--skip-1x", action="store_true", help="leave out the settlement run at 1×")
    parser.add_argument("--skip-ledger", action="store_true", help="leave out the ledger at 1× and at 10×")
    parser.add_argument("--skip-settlement", action="store_true", help="leave out the settlement runs")
    parser.add_argument("--skip-citus", action="store_true", help="leave out the Citus comparison")
    parser.add_argument(
        "--ops", type=int, default=None, help="postings per worker and round (default 1,500; 300 quick)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of postings at each size, the best kept")
    parser.add_argument("--no-check", action="store_true", help="leave out ledger_check over the grown ledger")
    parser.add_argument("--chunk-merchants", type=int, default=None, help="passed on to bench/settlement.py")
    parser.add_argument("--workers", type=int, default=None, help="passed on to bench/settlement.py")
    parser.add_argument(
        "--citus-url",
        metavar="URL",
        default=os.environ.get("BENCH_CITUS_URL") or CITUS_URL,
        help=f"the Citus coordinator (default: BENCH_CITUS_URL, else {CITUS_URL})",
    )
    args = parser.parse_args()
    if args.factor < 2:
        parser.error("--factor must be at least 2")
    if args.rounds < 1 or (args.ops is not None and args.ops < 2):
        parser.error("--rounds must be at least 1 and --ops at least 2")
    entries_1x = QUICK_ENTRIES if args.quick else BASE_ENTRIES
    entries_nx = entries_1x * args.factor
    payments_1x = QUICK_PAYMENTS if args.quick else BASE_PAYMENTS
    merchants_1x = QUICK_MERCHANTS if args.quick else BASE_MERCHANTS
    payments_nx, merchants_nx = payments_1x * args.factor, merchants_1x * args.factor
    ops = args.ops or (300 if args.quick else 1_500)

    figures: dict[str, Any] = {
        "ledger_1x_tps": "n/a",
        "ledger_10x_tps": "n/a",
        "ledger_10x_vs_1x": "n/a",
        "entries_1x": 0,
        "entries_10x": 0,
        "partitioned": "n/a",
    }
    redis = "none"
    if not args.skip_ledger:
        run = setup("scale", args)
        redis = run.redis
        figures.update(ledger_at_scale(entries_1x, entries_nx, ops, args.rounds, check=not args.no_check))
        run.cleanup()  # its database is not needed any more: dropped (unless --keep) before the settlement runs
    settle_1x = settle_nx = "n/a"
    if not args.skip_settlement:
        if not args.skip_1x:
            settle_1x = f"{settlement(payments_1x, merchants_1x, args):.2f}"
        settle_nx = f"{settlement(payments_nx, merchants_nx, args):.2f}"
    citus, why = ("n/a", "--skip-citus") if args.skip_citus else citus_vs_single(args.citus_url, ops, args.redis)
    if why:
        print(f"bench: citus_vs_single=n/a: {why}", flush=True)
    print(
        f"BENCH scale ledger_10x_vs_1x={figures['ledger_10x_vs_1x']} settle_10x_s={settle_nx}"
        f" citus_vs_single={citus} ledger_1x_tps={figures['ledger_1x_tps']}"
        f" ledger_10x_tps={figures['ledger_10x_tps']} entries_1x={figures['entries_1x']}"
        f" entries_10x={figures['entries_10x']} payments_10x={0 if args.skip_settlement else payments_nx}"
        f" partitioned={figures['partitioned']} settle_1x_s={settle_1x} factor={args.factor}"
        f" quick={'yes' if args.quick else 'no'} redis={redis}"
    )


# --- 1. the ledger at 1× and at 10× ---------------------------------------------------------------------------------


def ledger_at_scale(entries_1x: int, entries_nx: int, ops: int, rounds: int, *, check: bool) -> dict[str, Any]:
    """bench/ledger.py's wallets and single postings on a ledger of `entries_1x` entries, then of `entries_nx`:
    `rounds` rounds at each size, the best taking the size's rate (a round slowed by other work on the machine
    does not count against the size)."""
    import ledger

    from rewards.checks import ledger_verify

    pairs, _seeded = ledger.seed_wallets()
    partitioned = entries_partitioned()
    print(f"bench: rewards_entry is {'partitioned: ' + partitioned if partitioned else 'not partitioned'}", flush=True)
    posting_wallets = wallet_ids(pairs)
    programs = sorted({program for _holder, program in pairs}, key=lambda program: program.pk)

    figures: dict[str, Any] = {"partitioned": "yes" if partitioned else "no"}
    rates = {}
    for label, target, include in (("1x", entries_1x, posting_wallets), ("10x", entries_nx, [])):
        started = time.perf_counter()
        added = grow_history(target, programs, include, partitioned=bool(partitioned))
        entries = entry_count()
        print(f"bench: {added} history entries seeded in {time.perf_counter() - started:.0f} s: {entries}", flush=True)
        settle_database()
        figures[f"entries_{label}"] = entries
        measured = [postings(pairs, ops, prefix=f"scale{label}r{n}") for n in range(rounds)]
        rates[label] = max(measured)
        shown = " ".join(f"{rate:.0f}" for rate in measured)
        print(f"bench: ledger at {entries} entries: {shown} postings per second", flush=True)
    figures["ledger_1x_tps"] = f"{rates['1x']:.0f}"
    figures["ledger_10x_tps"] = f"{rates['10x']:.0f}"
    figures["ledger_10x_vs_1x"] = f"{rates['10x'] / rates['1x']:.2f}"
    if check:
        started = time.perf_counter()
        report = ledger_verify(seals=False)
        for line in report.checked:
            print("checked", line)
        assert report.violations == [], report.violations[:20]
        print(f"bench: ledger_check (no seals) over {entry_count()} entries in {time.perf_counter() - started:.0f} s")
    return figures


def entries_partitioned() -> str:
    """The partition key of rewards_entry (e.g. `RANGE (created_at)`), or "" when it is an ordinary table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_partkeydef(partrelid) FROM pg_partitioned_table WHERE partrelid = 'rewards_entry'::regclass"
        )
        row = cursor.fetchone()
    return row[0] if row else ""


def entry_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM rewards_entry")
        return int(cursor.fetchone()[0])


def wallet_ids(pairs: list[tuple[int, Any]]) -> list[int]:
    from rewards.services.accounts import wallet_account

    return [wallet_account(holder, program).pk for holder, program in pairs]


def postings(pairs: list[tuple[int, Any]], ops: int, prefix: str) -> float:
    """bench/ledger.py's single postings, its 8 workers × `ops`; checks the wallets and the entries; postings per
    second."""
    import ledger

    from rewards.models import Account, Entry

    wallets = Account.objects.filter(pk__in=wallet_ids(pairs))
    before_posted = sum(wallets.values_list("posted", flat=True))
    before_entries = Entry.objects.count()
    elapsed = ledger.parallel(lambda worker: ledger.single_postings(pairs, worker, ops, prefix))
    net = sum(ledger.parallel.values)  # type: ignore[attr-defined]
    assert sum(wallets.values_list("posted", flat=True)) == before_posted + net
    assert Entry.objects.count() == before_entries + 2 * ledger.WORKERS * ops
    return ledger.WORKERS * ops / elapsed


def settle_database() -> None:
    """What autovacuum and the checkpointer would have done after the history: the writes flushed and the tables
    analysed, not in the middle of a measured round."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")


def grow_history(target: int, programs: list[Any], include: list[int], *, partitioned: bool) -> int:
    """Seeds a year of history until the ledger holds about `target` entries: new cardholder wallets in `programs`
    (and the existing wallets `include`), each with an earn a month spent whole a day later (a lot and its movement),
    against the programmes' bank sub-accounts. Set-based, in one transaction; returns the entries added."""
    from django.conf import settings
    from django.db import connection, transaction

    from members.models import PointsProgram
    from rewards.models import Account, Entry, LedgerTransaction, Lot, Purpose
    from rewards.services import accounts as ledger_accounts

    missing = target - entry_count()
    if missing <= 0:
        return 0
    wallets_needed = max(len(include), math.ceil(missing / ENTRIES_PER_WALLET))
    shards = max(1, settings.LEDGER_BANK_SHARDS)
    for program in programs:  # every bank sub-account the history posts to, through the ledger's own getter
        for shard in range(shards):
            for purpose in (Purpose.ISSUANCE, Purpose.REDEMPTION):
                ledger_accounts.bank_points_account(program, purpose, shard)
    months_after = PointsProgram.ExpiryPolicy.MONTHS_AFTER_EARNING.value
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(
            "SELECT COALESCE(max(owner_id), %s) FROM rewards_account"
            " WHERE owner_kind = 'cardholder' AND owner_id >= %s",
            [SYNTHETIC_OWNERS, SYNTHETIC_OWNERS],
        )
        first_owner = int(cursor.fetchone()[0]) + 1
        new_wallets = wallets_needed - len(include)
        account_columns, account_values = insert_columns(
            Account,
            {
                "owner_kind": "'cardholder'",
                "owner_id": "%(first)s + n",
                "purpose": "'points'",
                "unit": "(%(units)s::text[])[1 + n %% %(programs)s]",
                "shard": "0",
                "spread": "(%(first)s + n) %% %(shards)s",  # AccountRef.spread: the cardholder's sub-account
                "program_id": "(%(program_ids)s::bigint[])[1 + n %% %(programs)s]",
                "bank_id": "(%(bank_ids)s::bigint[])[1 + n %% %(programs)s]",
                "may_go_negative": "false",
                "created_at": "now() - interval '400 days'",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO rewards_account ({account_columns}) SELECT {account_values}
            FROM generate_series(0, %(count)s - 1) n
            """,
            {
                "first": first_owner,
                "count": new_wallets,
                "units": [p.unit_code for p in programs],
                "program_ids": [p.pk for p in programs],
                "bank_ids": [p.bank_id for p in programs],
                "programs": len(programs),
                "shards": shards,
            },
        )
        # One row per history transaction: the wallet, the bank sub-account on the other side, the amount, when.
        # A wallet's month m: earned at a time of its own in that month of the past year, spent whole a day later.
        cursor.execute(
            """
            CREATE TEMP TABLE bench_history ON COMMIT DROP AS
            SELECT w.id AS wallet, w.owner_id, w.program_id, w.unit, k.kind, bank.id AS bank_account,
                   x.amount, k.created_at, 'history:' || w.id || ':' || m || ':' || k.kind AS key,
                   'history:' || w.id || ':' || m || ':earn' AS earn_key
            FROM rewards_account w
            CROSS JOIN generate_series(0, %(months)s - 1) m
            CROSS JOIN LATERAL (
              SELECT 1 + (w.id * 7919 + m * 104729) %% 500 AS amount,
                     now() - interval '365 days' + m * interval '30 days'
                     + ((w.id * 48271 + m * 16807) %% 2419200) * interval '1 second' AS earned_at
            ) x
            CROSS JOIN LATERAL (VALUES ('earn', 'issuance', x.earned_at),
                                       ('spend', 'redemption', x.earned_at + interval '1 day'))
              k (kind, side, created_at)
            JOIN rewards_account bank ON bank.owner_kind = 'bank' AND bank.owner_id = w.bank_id
              AND bank.purpose = k.side AND bank.unit = w.unit AND bank.shard = w.owner_id %% %(shards)s
            WHERE w.purpose = 'points' AND (w.id = ANY(%(include)s::bigint[])
                                            OR w.owner_id BETWEEN %(first)s AND %(last)s)
            """,
            {
                "months": MONTHS,
                "shards": shards,
                "include": include,
                "first": first_owner,
                "last": first_owner + new_wallets - 1,
            },
        )
        cursor.execute("ANALYZE bench_history")
        if partitioned:
            add_missing_partitions(cursor)
        txn_columns, txn_values = insert_columns(
            LedgerTransaction,
            {
                "kind": "h.kind",
                "idempotency_key": "h.key",
                "request_hash": "encode(sha256(convert_to(h.key, 'UTF8')), 'hex')",
                "points": "h.amount",
                "metadata": """CASE h.kind WHEN 'earn'
                  THEN jsonb_build_object('cardholder_id', h.owner_id, 'program_id', h.program_id, 'source', 'payment')
                  ELSE jsonb_build_object('cardholder_id', h.owner_id, 'program_id', h.program_id) END""",
                "entry_count": "2",  # an earn's or a spend's two legs, below
                "created_at": "h.created_at",
            },
        )
        cursor.execute(  # each transaction with its idempotency key's row, as every posting writes them
            f"WITH t AS (INSERT INTO rewards_ledgertransaction ({txn_columns}) SELECT {txn_values} FROM bench_history h"
            " ORDER BY h.created_at, h.key RETURNING id, idempotency_key, created_at)"
            " INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)"
            " SELECT idempotency_key, id, created_at FROM t",
            {},  # with parameters: insert_columns doubles a default's %
        )
        # The entries in the order the services write them (an earn: the bank's side, then the wallet; a spend: the
        # wallet, then the bank's), each carrying its account's running balance from where the account stood.
        entry_columns, entry_values = insert_columns(
            Entry,
            {
                "transaction_id": "e.transaction_id",
                "account_id": "e.account_id",
                "unit": "e.unit",
                "amount": "e.amount",
                "balance_after": "e.balance_after",
                "spread": "e.spread",
                "created_at": "e.created_at",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO rewards_entry ({entry_columns})
            SELECT {entry_values} FROM (
              SELECT t.transaction_id, leg.account_id, a.spread, h.unit, leg.amount,
                     t.transaction_created_at AS created_at, leg.n,
                     a.posted + sum(leg.amount) OVER (PARTITION BY leg.account_id ORDER BY t.transaction_id, leg.n)
                       AS balance_after
              FROM bench_history h
              JOIN rewards_ledgerkey t ON t.idempotency_key = h.key
              CROSS JOIN LATERAL (VALUES
                (1, CASE h.kind WHEN 'earn' THEN h.bank_account ELSE h.wallet END, -h.amount),
                (2, CASE h.kind WHEN 'earn' THEN h.wallet ELSE h.bank_account END, h.amount)
              ) leg (n, account_id, amount)
              JOIN rewards_account a ON a.id = leg.account_id
            ) e
            ORDER BY e.transaction_id, e.n
            """,
            {},
        )
        added = cursor.rowcount
        cursor.execute(
            """
            UPDATE rewards_account a SET posted = a.posted + d.total, version = a.version + d.entries
            FROM (
              SELECT account_id, sum(amount) AS total, count(*) AS entries FROM (
                SELECT bank_account AS account_id, CASE kind WHEN 'earn' THEN -amount ELSE amount END AS amount
                FROM bench_history
                UNION ALL
                SELECT wallet, CASE kind WHEN 'earn' THEN amount ELSE -amount END FROM bench_history
              ) legs GROUP BY account_id
            ) d
            WHERE a.id = d.account_id
            """
        )
        # Each earn's lot, spent whole by the spend a day later: remaining 0, one movement.
        lot_columns, lot_values = insert_columns(
            Lot,
            {
                "account_id": "h.wallet",
                "program_id": "h.program_id",
                "earned_by_id": "t.transaction_id",
                "earned_by_created_at": "t.transaction_created_at",
                "amount": "h.amount",
                "remaining": "0",
                "earned_on": "(t.transaction_created_at AT TIME ZONE 'Asia/Shanghai')::date",
                "expires_on": f"""CASE p.expiry_policy WHEN '{months_after}'
                  THEN ((t.transaction_created_at AT TIME ZONE 'Asia/Shanghai')::date
                        + p.expiry_period * interval '1 month')::date
                  ELSE make_date(extract(year FROM t.transaction_created_at AT TIME ZONE 'Asia/Shanghai')::int
                                 + p.expiry_period, 12, 31) END""",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO rewards_lot ({lot_columns}) SELECT {lot_values}
            FROM bench_history h JOIN rewards_ledgerkey t ON t.idempotency_key = h.key
            JOIN members_pointsprogram p ON p.id = h.program_id
            WHERE h.kind = 'earn' ORDER BY t.transaction_id
            """,
            {},
        )
        cursor.execute(
            """
            INSERT INTO rewards_lotmovement (transaction_id, transaction_created_at, lot_id, amount)
            SELECT spend.transaction_id, spend.transaction_created_at, lot.id, -h.amount
            FROM bench_history h
            JOIN rewards_ledgerkey spend ON spend.idempotency_key = h.key
            JOIN rewards_ledgerkey earn ON earn.idempotency_key = h.earn_key
            JOIN rewards_lot lot ON lot.earned_by_id = earn.transaction_id
            WHERE h.kind = 'spend' ORDER BY spend.transaction_id
            """
        )
        cursor.execute("DROP TABLE bench_history")  # now, not at the commit: inside a caller's transaction too
    return added


def add_missing_partitions(cursor: Any) -> None:
    """The history's months get their monthly partitions of rewards_entry through the platform's own function
    (core.partitions.partitions_create), as the daily job would have made them at the time."""
    from core.calendar import SHANGHAI
    from core.partitions import partitions_create

    cursor.execute("SELECT min(created_at), max(created_at) FROM bench_history")
    first, last = (moment.astimezone(SHANGHAI).date().replace(day=1) for moment in cursor.fetchone())
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    for table in ("rewards_ledgertransaction", "rewards_entry"):
        made = partitions_create(table, first, months)
        if made:
            print(f"bench: {len(made)} partitions of {table} made for the history's months", flush=True)


# --- 2. settlement --------------------------------------------------------------------------------------------------


def settlement(payments: int, merchants: int, args: argparse.Namespace) -> float:
    """bench/settlement.py in a subprocess (its own database); its settle_s."""
    print(f"bench: settlement of {payments} payments of {merchants} merchants ...", flush=True)
    started = time.perf_counter()
    command = [sys.executable, str(ROOT / "bench" / "settlement.py"), "--payments", str(payments)]
    command += ["--merchants", str(merchants)]
    if args.chunk_merchants:
        command += ["--chunk-merchants", str(args.chunk_merchants)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    env = {k: v for k, v in STARTING_ENVIRONMENT.items() if k != "BENCH_DATABASE"}
    result = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = result.stdout.splitlines()
    for line in lines:
        if line.startswith("bench: seeded") or line.startswith("bench: settled"):
            print(f"  {line}", flush=True)
    found = _key(lines, "BENCH settlement ", "settle_s")
    if result.returncode or found is None:
        print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"bench/scale: settlement of {payments} payments failed (exit {result.returncode})")
    print(f"bench: settlement run took {time.perf_counter() - started:.0f} s in all", flush=True)
    return float(found)


# --- 3. Citus -------------------------------------------------------------------------------------------------------


def citus_vs_single(url: str, ops: int, redis: str | None) -> tuple[str, str]:
    """`citus_vs_single` from bench/ledger_citus.py against the coordinator at `url` when it answers; else
    ("n/a", why)."""
    try:
        import psycopg2

        connection = psycopg2.connect(url.rstrip("/") + "/postgres", connect_timeout=5)
        connection.close()
    except Exception as exc:
        return "n/a", f"no Citus coordinator answers at {url}: {str(exc).strip().splitlines()[0]}"
    command = [sys.executable, str(ROOT / "bench" / "ledger_citus.py"), "--citus", url]
    if redis:
        command += ["--redis", redis]
    env = {k: v for k, v in STARTING_ENVIRONMENT.items() if k != "BENCH_DATABASE"}
    env.update(BENCH_OPS=str(ops), BENCH_CHECK_ENTRIES="0")
    print(f"bench: bench/ledger_citus.py --citus {url} (BENCH_OPS={ops}) ...", flush=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = _key(result.stdout.splitlines(), "BENCH ", "citus_vs_single")
    if result.returncode or found is None:
        tail = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
        return "n/a", f"bench/ledger_citus.py gave no figure (exit {result.returncode}): {tail}"
    return found, ""


def _key(lines: list[str], prefix: str, key: str) -> str | None:
    """The value of `key=` on the last line starting with `prefix`."""
    for line in reversed(lines):
        if line.startswith(prefix):
            match = re.search(rf"(?:^| ){re.escape(key)}=(\S+)", line)
            return match.group(1) if match else None
    return None


if __name__ == "__main__":
    main()
