"""Fault soak of the channel simulator: C clients x N sales with random faults, timeouts resolved by inquiry.

Floor: the same clients hitting the bare `/healthz` endpoint (HTTP + threads, no signing, no SQLite).
Asserts: every call is in the journal exactly once, no reference is charged twice, the journal's money equals what
the clients resolved as captured, and concurrent holds on one account never overdraw.

    .venv/bin/python bench/simulator_soak.py [--clients 8] [--payments 2000]

It uses neither our database nor Redis: the simulator keeps its journal in its own SQLite file in a temporary
directory, removed with the simulator process when the run ends (Ctrl-C, SIGTERM and SIGHUP included). Last line:
BENCH simulator_soak ... redis=none
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from common import exit_on_signals

from simulator import process
from simulator.client import SimulatorError, SimulatorTimeout

ACQ = "acq-unionpay-a"


def run_threads(count: int, target) -> float:  # type: ignore[no-untyped-def]
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--payments", type=int, default=2000)
    args = parser.parse_args()
    exit_on_signals()
    print("bench: database none (the simulator's own SQLite, in a temporary directory); redis none", flush=True)
    per_client = args.payments // args.clients
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = process.start(
            workdir, key_id="bench", secret="bench-secret", config=process.quiet_config(workdir, hang_ms=20)
        )
        try:
            admin = server.client()
            admin.set_faults(
                ACQ, decline_rate=0.05, error_rate=0.05, timeout_rate=0.03, charged_timeout_rate=0.03, seed=1
            )

            def floor(n: int) -> None:
                with httpx.Client() as http:
                    for _ in range(per_client):
                        http.get(server.url + "/healthz")

            floor_seconds = run_threads(args.clients, floor)

            captured: dict[str, int] = {}
            lock = threading.Lock()

            def soak(n: int) -> None:
                with server.client(timeout=5) as client:
                    believed: dict[str, int] = {}
                    for i in range(per_client):
                        reference = f"b{n}-{i}"
                        amount = 1000 + i * 100  # ends in 00: no deterministic trigger, the dice decide
                        try:
                            payment = client.authorise(
                                channel=ACQ, reference=reference, amount=amount, currency="CNY",
                                instrument={"kind": "card", "token": "tok"}, capture=True, request_id=reference,
                            )  # fmt: skip
                        except SimulatorTimeout:
                            payment = client.payment_status(channel=ACQ, reference=reference)
                        except SimulatorError as exc:
                            if exc.code != "channel_error":
                                raise
                            continue
                        if payment.state == "captured":
                            believed[reference] = payment.captured_amount
                    with lock:
                        captured.update(believed)

            soak_seconds = run_threads(args.clients, soak)

            rows = admin.journal_all(channel=ACQ)
            sent = Counter(r["request_id"] for r in rows if r["op"] == "sale")
            assert len(sent) == per_client * args.clients, len(sent)
            assert set(sent.values()) == {1}
            money = Counter(r["reference"] for r in rows if r["money"])
            double = sum(1 for count in money.values() if count > 1)
            assert double == 0
            assert {r["reference"]: r["money"] for r in rows if r["money"]} == captured
            outcomes = Counter(r["outcome"] for r in rows if r["op"] == "sale")

            admin.open_account(channel="wallet-x", account_id="race", currency="CNY", balance=10_000)
            results: list[str] = []

            def hold(n: int) -> None:
                with server.client() as client:
                    try:
                        client.hold(account_id="race", reference=f"h{n}", amount=300)
                        results.append("ok")
                    except SimulatorError as exc:
                        results.append(exc.code)

            run_threads(40, hold)
            account = admin.account("race")
            assert results.count("ok") == 33
            assert account.available == 100
            assert account.held == 9900
        finally:
            process.stop(server)
    total = per_client * args.clients
    print(
        f"BENCH simulator_soak clients={args.clients} payments={total} seconds={soak_seconds:.2f} "
        f"payments_per_s={total / soak_seconds:.0f} floor_healthz_per_s={total / floor_seconds:.0f} "
        f"journal_rows={len(rows)} double_charges={double} declined={outcomes['declined']} errors={outcomes['error']} "
        f"timeouts={outcomes['timeout']} charged_timeouts={outcomes['charged_timeout']} holds_ok=33/40 overdraw=0"
        " redis=none"
    )


if __name__ == "__main__":
    main()
