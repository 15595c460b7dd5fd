"""django-hordak two-account transfers from 8 processes with their own connections (run by bench/ledger.py).

    .venv/bin/python bench/hordak_bench.py [--database NAME] [--keep]

bench/ledger.py gives it a database of its run (--database); run alone, it creates one of its own like every benchmark
(bench/common.py). It never uses Redis. Last line: HORDAK transfers_per_s=...
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import time

from common import add_arguments, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, redis=False)
    args = parser.parse_args()
    setup("hordak", args, redis="never", settings_module="bench.hordak_settings", fresh_tables=("hordak_leg",))

    from django.db import connections
    from djmoney.money import Money
    from hordak.models import Account, Leg

    holders = [
        Account.objects.create(name=f"holder {n}", type=Account.TYPES.liability, currencies=["CNY"]) for n in range(100)
    ]
    banks = [
        Account.objects.create(name=f"bank {n}", type=Account.TYPES.liability, currencies=["CNY"]) for n in range(3)
    ]
    workers, ops = int(os.environ.get("BENCH_WORKERS", "8")), int(os.environ.get("BENCH_OPS", "1500"))
    holder_ids, bank_ids = [a.pk for a in holders], [a.pk for a in banks]
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()

    def run(worker: int) -> None:
        rng = random.Random(worker)
        accounts = {a.pk: a for a in Account.objects.filter(pk__in=holder_ids + bank_ids)}
        barrier.wait()
        started = time.time()
        for _ in range(ops):
            holder, bank = accounts[rng.choice(holder_ids)], accounts[rng.choice(bank_ids)]
            bank.transfer_to(holder, Money(rng.randint(1, 50), "CNY"))
        results.put((started, time.time()))
        connections.close_all()

    processes = [ctx.Process(target=run, args=(i,)) for i in range(workers)]
    for process in processes:
        process.start()
    spans = [results.get() for _ in processes]
    for process in processes:
        process.join()
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    assert Leg.objects.count() == 2 * workers * ops
    print(f"HORDAK transfers_per_s={workers * ops / elapsed:.1f}")


if __name__ == "__main__":
    main()
