"""django-hordak two-account transfers from 8 threads with their own connections (run by bench/ledger.py)."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.hordak_settings"


def main() -> None:
    import psycopg2

    settings_db = __import__("bench.hordak_settings", fromlist=["DATABASES"]).DATABASES["default"]
    admin = psycopg2.connect(
        dbname="postgres", user=settings_db["USER"], host=settings_db["HOST"], port=settings_db["PORT"] or 5432
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{settings_db["NAME"]}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{settings_db["NAME"]}"')
    admin.close()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from djmoney.money import Money
    from hordak.models import Account, Leg

    call_command("migrate", verbosity=0)
    holders = [
        Account.objects.create(name=f"holder {n}", type=Account.TYPES.liability, currencies=["CNY"]) for n in range(100)
    ]
    banks = [Account.objects.create(name=f"bank {n}", type=Account.TYPES.liability, currencies=["CNY"]) for n in range(3)]
    workers, ops = int(os.environ.get("BENCH_WORKERS", "8")), int(os.environ.get("BENCH_OPS", "1500"))
    barrier = threading.Barrier(workers + 1)

    def run(worker: int) -> None:
        rng = random.Random(worker)
        barrier.wait()
        for _ in range(ops):
            holder, bank = rng.choice(holders), rng.choice(banks)
            bank.transfer_to(holder, Money(rng.randint(1, 50), "CNY"))
        connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert Leg.objects.count() == 2 * workers * ops
    print(f"HORDAK transfers_per_s={workers * ops / elapsed:.1f}")


if __name__ == "__main__":
    main()
