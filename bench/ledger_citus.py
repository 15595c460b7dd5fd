"""The ledger's single postings on Citus side by side with plain PostgreSQL: the same 8 workers each earning and
redeeming through the services (as bench/ledger.py's first part), once in a database of the run's own on
DATABASE_URL's server, once in one on a Citus coordinator with the ledger distributed (`citus_distribute`). Asserts
both ledgers' balances and invariants and prints `BENCH ledger_citus ...` last.

    .venv/bin/python bench/ledger_citus.py [--citus postgres://postgres@127.0.0.1:5440]

The Citus side needs the coordinator and workers running (scripts/citus/citus.sh start); its database,
`mengka_citus_bench_<pid>`, is made on every node by citus.sh createdb and dropped on every node at the end.
BENCH_OPS (postings per worker, default 1,500) scales it down.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from urllib.parse import urlparse, urlunparse

from common import ROOT, add_arguments, setup

SIDE_LINE = "SIDE single_tps="


def side(args: argparse.Namespace) -> None:
    """One side, in its own process (Django is set up once per process)."""
    run = setup("ledger_citus", args)
    from django.core.management import call_command
    from django.db import connection

    if args.side == "citus":
        call_command("citus_distribute", verbosity=0)
        connection.close()  # the database's Citus settings apply to connections made from now on

    from ledger import HOLDERS, OPS_PER_WORKER, WORKERS, parallel, seed_wallets, single_postings

    from rewards.checks import ledger_verify
    from rewards.models import Account, Entry

    pairs, seeded = seed_wallets()

    elapsed = parallel(lambda worker: single_postings(pairs, worker))
    posted = parallel.values  # type: ignore[attr-defined]
    assert sum(Account.objects.filter(purpose="points").values_list("posted", flat=True)) == seeded + sum(posted)
    assert Entry.objects.count() == 2 * (HOLDERS + WORKERS * OPS_PER_WORKER)
    report = ledger_verify(seals=False)
    assert report.violations == [], report.violations
    print(f"{SIDE_LINE}{WORKERS * OPS_PER_WORKER / elapsed:.1f} database={run.database}", flush=True)


def run_side(name: str, extra: list[str], env: dict[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, __file__, "--side", name, "--redis", "none", *extra],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith(SIDE_LINE):
            print(f"{name}: {line}", flush=True)
            return float(line[len(SIDE_LINE) :].split()[0])
    print(result.stdout[-3000:], result.stderr[-3000:], file=sys.stderr)
    raise SystemExit(f"bench/ledger_citus: the {name} side failed")


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument(
        "--citus",
        metavar="URL",
        default=os.environ.get("CITUS_URL", "postgres://postgres@127.0.0.1:5440"),
        help="the Citus coordinator's server (default CITUS_URL, else postgres://postgres@127.0.0.1:5440)",
    )
    parser.add_argument("--side", choices=("plain", "citus"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args)
        return
    single_tps = run_side("plain", [], {})
    coordinator = urlparse(args.citus)
    port = coordinator.port or 5432
    database = f"mengka_citus_bench_{os.getpid()}"
    citus_sh = str(ROOT / "scripts" / "citus" / "citus.sh")
    subprocess.run(
        ["bash", citus_sh, "createdb", database],
        env={**os.environ, "CITUS_PORT": str(port)},
        check=True,
        capture_output=True,
    )
    try:
        citus_tps = run_side(
            "citus",
            ["--database", database],
            {"DATABASE_URL": urlunparse(coordinator._replace(path="/postgres")), "LEDGER_DISTRIBUTED": "true"},
        )
    finally:
        for node in (port, port + 1, port + 2):
            subprocess.run(
                [
                    "psql",
                    "-h",
                    coordinator.hostname or "127.0.0.1",
                    "-p",
                    str(node),
                    "-U",
                    coordinator.username or "postgres",
                    "-d",
                    "postgres",
                    "-qAtc",
                    f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                ],
                check=False,
                capture_output=True,
            )
    print(
        f"BENCH ledger_citus single_tps={single_tps:.0f} citus_tps={citus_tps:.0f}"
        f" citus_vs_single={citus_tps / single_tps:.2f} workers=8 ops={8 * int(os.environ.get('BENCH_OPS', '1500'))}"
    )


if __name__ == "__main__":
    main()
