"""Ledger benchmark (PostgreSQL): single postings from 8 workers against raw SQL and django-hordak, the bulk earn
against a raw COPY, and ledger_check over 1,000,000 entries. Seeds its own accounts, asserts its own side effects and
prints `BENCH ledger ...` last.

    .venv/bin/python bench/ledger.py [--redis URL|none] [--database NAME] [--keep]

Its database and Redis db are its own (bench/common.py). django-hordak (the `bench` extra) runs in a subprocess
(bench/hordak_bench.py) with its own settings module (bench/hordak_settings.py), because it brings its own apps and
migrations, in a second database of the run's own (`mengka_bench_hordak_<suffix>`), dropped with the first.
BENCH_OPS (postings per worker, default 1,500) and BENCH_CHECK_ENTRIES (default 1,000,000) scale it down.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import time
from typing import Any

from common import ROOT, Run, add_arguments, setup

WORKERS = 8
OPS_PER_WORKER = int(os.environ.get("BENCH_OPS", "1500"))
HOLDERS = 100
BULK_EVENTS = 100_000
CHECK_ENTRIES = int(os.environ.get("BENCH_CHECK_ENTRIES", "1000000"))


def parallel(work: Any) -> float:
    """Runs work(i) in WORKERS forked processes, each with its own database connection; returns the wall time from
    the moment all are ready until the last finishes."""
    import multiprocessing

    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()

    def run(i: int) -> None:
        try:
            barrier.wait()
            started = time.time()
            value = work(i)
            results.put((i, started, time.time(), value, None))
        except BaseException as exc:
            results.put((i, 0.0, 0.0, None, repr(exc)))
        finally:
            connections.close_all()

    processes = [ctx.Process(target=run, args=(i,)) for i in range(WORKERS)]
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    for process in processes:
        process.join()
    errors = [o[4] for o in outcomes if o[4]]
    if errors:
        raise RuntimeError(errors[0])
    parallel.values = [o[3] for o in sorted(outcomes)]  # type: ignore[attr-defined]
    return max(o[2] for o in outcomes) - min(o[1] for o in outcomes)


def seed_wallets() -> tuple[list[tuple[int, Any]], int]:
    """3 banks with their programmes and HOLDERS cardholders, each with 100,000 points in one programme's wallet and
    that programme's bank sub-accounts made; returns the (cardholder id, programme) pairs and the points seeded."""
    import datetime as dt
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from members.models import Cardholder, MemberBank, PointsProgram
    from rewards import services as s

    programs = []
    for n in range(3):
        bank, _ = MemberBank.objects.get_or_create(
            code=f"BENCH{n}",
            defaults={
                "name_zh": f"基准银行{n}",
                "name_en": f"Bench bank {n}",
                "kind": "joint_stock",
                "joined_on": dt.date(2025, 1, 1),
            },
        )
        program, _ = PointsProgram.objects.get_or_create(
            bank=bank, defaults={"unit_code": f"BENCH{n}", "name": f"Bench {n}", "point_value_cny": Decimal("0.005")}
        )
        programs.append(program)
    User = get_user_model()
    holders = []
    for n in range(HOLDERS):
        user, _ = User.objects.get_or_create(username=f"bench-holder-{n}")
        holder, _ = Cardholder.objects.get_or_create(
            user=user,
            defaults={
                "display_name": f"bench {n}",
                "phone_encrypted": "-",
                "phone_hash": f"bench{n:059d}",
                "phone_last4": f"{n:04d}",
            },
        )
        holders.append(holder.pk)
    pairs = [(h, programs[i % 3]) for i, h in enumerate(holders)]
    seeded = 0
    for h, program in pairs:  # ORM path once per wallet: creates the accounts
        s.points_earn(cardholder_id=h, program=program, amount=100_000, idempotency_key=f"seed:{h}")
        seeded += 100_000
        for purpose in (s.Purpose.ISSUANCE, s.Purpose.REDEMPTION):
            s.bank_points_account(program, purpose, h)
    return pairs, seeded


def single_postings(pairs: list[tuple[int, Any]], worker: int, ops: int = OPS_PER_WORKER, prefix: str = "b") -> int:
    """One worker's single postings: `ops` alternating `points_earn` / `points_redeem` of 1 to 50 points on random
    wallets of `pairs`, each with its own idempotency key (`prefix` keeps another round's keys apart); returns the
    net points posted."""
    from rewards import services as s

    rng = random.Random(worker)
    net = 0
    for n in range(ops):
        h, program = rng.choice(pairs)
        amount = rng.randint(1, 50)
        if n % 2:
            s.points_redeem(cardholder_id=h, program=program, amount=amount, idempotency_key=f"{prefix}:{worker}:{n}")
            net -= amount
        else:
            s.points_earn(cardholder_id=h, program=program, amount=amount, idempotency_key=f"{prefix}:{worker}:{n}")
            net += amount
    return net


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    run = setup("ledger", args)

    from django.db import connection

    from rewards import services as s
    from rewards.checks import ledger_verify
    from rewards.models import Account, Entry, LedgerTransaction
    from rewards.sealing import seal_pending
    from rewards.services.posting import transaction_keyed

    pairs, seeded = seed_wallets()

    # 1. single postings through the service, 8 workers
    def single(worker: int) -> int:
        return single_postings(pairs, worker)

    elapsed = parallel(single)
    posted = parallel.values  # type: ignore[attr-defined]
    single_tps = WORKERS * OPS_PER_WORKER / elapsed
    wallets = Account.objects.filter(purpose="points")
    assert sum(wallets.values_list("posted", flat=True)) == seeded + sum(posted)
    assert Entry.objects.count() == 2 * (HOLDERS + WORKERS * OPS_PER_WORKER)

    # 2. the same 8 workers by hand, in the ledger's own entry and account tables (same indexes, constraints and
    # foreign keys): one transaction of two entry inserts and one guarded balance update. Removed afterwards.
    raw_txn = transaction_keyed(
        kind="adjust",
        idempotency_key="bench-raw",
        request_hash="-",
        entry_count=0,  # its entries are removed after
    )
    raw_accounts = Account.objects.bulk_create(
        Account(owner_kind="alliance", owner_id=900_000 + i, purpose="fees", unit="RAWBENCH", posted=10_000_000)
        for i in range(HOLDERS + 3)
    )
    raw_ids = [a.pk for a in raw_accounts]

    def raw(worker: int) -> None:
        import psycopg2

        params = connection.get_connection_params()
        conn = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
        cursor = conn.cursor()
        rng = random.Random(worker)
        for _ in range(OPS_PER_WORKER):
            account, bank = raw_ids[rng.randrange(HOLDERS)], raw_ids[HOLDERS + rng.randrange(3)]
            amount = rng.randint(1, 50)
            cursor.execute(
                "INSERT INTO rewards_entry"
                " (transaction_id, account_id, spread, unit, amount, balance_after, created_at)"
                " VALUES (%s, %s, 0, 'RAWBENCH', %s, 0, %s), (%s, %s, 0, 'RAWBENCH', %s, 0, %s)",
                (raw_txn.pk, account, -amount, raw_txn.created_at, raw_txn.pk, bank, amount, raw_txn.created_at),
            )
            cursor.execute(
                "UPDATE rewards_account SET posted = posted - %s WHERE id = %s AND posted - held >= %s",
                (amount, account, amount),
            )
            conn.commit()
        conn.close()

    raw_tps = WORKERS * OPS_PER_WORKER / parallel(raw)
    assert Entry.objects.filter(transaction=raw_txn).count() == 2 * WORKERS * OPS_PER_WORKER
    Entry.objects.filter(transaction=raw_txn).delete()
    Account.objects.filter(pk__in=raw_ids).delete()
    raw_txn.delete()

    # 3. django-hordak, same 8 workers, separate settings and database
    hordak_tps = hordak_rate(run)

    # 4. bulk earn of 100,000 events against a raw COPY of as many rows into our entry table
    rng = random.Random(7)
    events = [
        s.EarnEvent(h, program.pk, rng.randint(1, 100))
        for h, program in (rng.choice(pairs) for _ in range(BULK_EVENTS))
    ]
    before = Entry.objects.count()
    started = time.perf_counter()
    batch = s.points_earn_bulk(events=events, idempotency_key="bench-bulk-0")
    bulk_seconds = time.perf_counter() - started
    bulk_entries = Entry.objects.count() - before
    assert bulk_entries == BULK_EVENTS + 3
    bulk_eps = bulk_entries / bulk_seconds
    from django.db import transaction

    wallet_ids = list(wallets.values_list("id", "spread"))
    at = batch.created_at.isoformat()
    payload = "".join(
        "{}\t{}\t{}\tBENCH0\t1\t1\t{}\n".format(batch.pk, *wallet_ids[i % len(wallet_ids)], at)
        for i in range(bulk_entries)
    )
    last_id = Entry.objects.order_by("-id").values_list("id", flat=True).first()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:  # committed, like the bulk earn (deferred FK checks)
        cursor.cursor.copy_expert(
            "COPY rewards_entry (transaction_id, account_id, spread, unit, amount, balance_after, created_at)"
            " FROM STDIN",
            io.StringIO(payload),
        )
    copy_seconds = time.perf_counter() - started
    assert Entry.objects.filter(id__gt=last_id).count() == bulk_entries
    Entry.objects.filter(id__gt=last_id).delete()  # the baseline's rows are not a ledger posting
    copy_eps = bulk_entries / copy_seconds

    # 5. fill to 1,000,000 entries, seal, and time ledger_check
    n = 1
    while Entry.objects.count() < CHECK_ENTRIES:
        missing = CHECK_ENTRIES - Entry.objects.count()
        size = min(BULK_EVENTS, max(missing - 3, 1))
        more = [s.EarnEvent(h, program.pk, 1) for h, program in (rng.choice(pairs) for _ in range(size))]
        s.points_earn_bulk(events=more, idempotency_key=f"bench-bulk-{n}")
        n += 1
    seal_pending(batch_size=5000)
    entries = Entry.objects.count()
    started = time.perf_counter()
    report = ledger_verify()
    check_s = time.perf_counter() - started
    assert report.violations == [], report.violations
    assert LedgerTransaction.objects.filter(seal__isnull=True).count() == 0
    for line in report.checked:
        print("checked", line)
    vs_hordak = f"{single_tps / hordak_tps:.2f}" if hordak_tps else "n/a"
    print(
        f"BENCH ledger single_tps={single_tps:.0f} raw_tps={raw_tps:.0f} vs_raw={single_tps / raw_tps:.2f}"
        f" hordak_tps={hordak_tps:.0f} vs_hordak={vs_hordak} bulk_eps={bulk_eps:.0f} copy_eps={copy_eps:.0f}"
        f" vs_copy={bulk_eps / copy_eps:.2f} check_entries={entries} check_s={check_s:.2f} redis={run.redis}"
    )


def hordak_rate(run: Run) -> float:
    """Runs bench/hordak_bench.py in its own process (own settings) in a second database of this run's own, created
    here so that this process drops it however the run ends; returns transfers per second."""
    database = run.create_database("hordak")
    env = {
        **os.environ,
        "DATABASE_URL": run.server,
        "BENCH_WORKERS": str(WORKERS),
        "BENCH_OPS": str(OPS_PER_WORKER),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "hordak_bench.py"), "--database", database],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("HORDAK transfers_per_s="):
            return float(line.split("=", 1)[1])
    print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)
    return 0.0


if __name__ == "__main__":
    main()
