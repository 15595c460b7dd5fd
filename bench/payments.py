"""Payments benchmark: create → confirm → capture with points earned, through the services, 8 workers on PostgreSQL.

The channel is the in-process zero-latency connector (the simulator's cost is not ours). The floor, in the same run and
by the same workers through the ORM: one transaction inserting a payment row, an attempt row and two ledger entries.

    .venv/bin/python bench/payments.py [--seconds 20] [--redis URL|none] [--database NAME] [--keep]

Its database and Redis db are its own (bench/common.py). Last line:
BENCH payments tps=... p50_ms=... p99_ms=... floor_tps=... vs_floor=... redis=...
"""

from __future__ import annotations

import argparse

from common import add_arguments, describe, run_workers, setup
from workloads import WORKERS, floor_worker, pay_worker, seed, verify


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    add_arguments(parser)
    args = parser.parse_args()
    run = setup("payments", args)
    seeded = seed()
    operations, latencies, elapsed = run_workers(WORKERS, args.seconds, pay_worker(seeded))
    verify(operations)
    figures = describe(latencies)
    tps = operations / elapsed
    floor_ops, _, floor_elapsed = run_workers(WORKERS, args.seconds, floor_worker(seeded))
    floor_tps = floor_ops / floor_elapsed
    print(f"payments: {operations} in {elapsed:.1f}s; floor: {floor_ops} in {floor_elapsed:.1f}s")
    print(
        f"BENCH payments tps={tps:.0f} p50_ms={figures['p50_ms']} p99_ms={figures['p99_ms']} "
        f"floor_tps={floor_tps:.0f} vs_floor={tps / floor_tps:.2f} redis={run.redis}"
    )


if __name__ == "__main__":
    main()
