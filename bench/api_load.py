"""Merchant API load: gunicorn on loopback against PostgreSQL, driven from a second process.

The measured call is POST /api/v1/payments creating and confirming a payment with automatic capture by
`payment_code` (each code made beforehand for a demo cardholder, as the till would receive it), with an idempotency
key, points earned and events written to the outbox — the webhook worker is not running. In the same run the same
clients call the floor: an API-key-authenticated DRF POST that inserts one row (`bench/floor_api.py`). Between the
steps the database is vacuumed and analysed (and checkpointed once, before the loads: `settle`), so that neither load
pays for the maintenance the step before it made due.

Server: gunicorn, 2 sync workers, one per core (sync workers beat threads for this CPU-bound work; two beat three or
four here, where PostgreSQL, Redis and the load generator share the same two cores: see docs/performance.md;
`BENCH_GUNICORN_WORKERS` sets another number). The load generator is one process of client threads on keep-alive
connections; it shares the two cores with the server.

    .venv/bin/python bench/api_load.py --redis redis://127.0.0.1:6379 [--seconds 20] [--database NAME] [--keep]

It needs Redis (throttling, risk counters, breakers and the webhook queue live there): `--redis` or REDIS_URL names the
server, on which the run claims a db of its own; its database is its own too (bench/common.py). The server inherits
both. Last line: BENCH api tps=... p50_ms=... p99_ms=... p50_1c_ms=... floor_tps=... vs_floor=... cpu_ms=...
floor_cpu_ms=... cpu_vs_floor=... redis=...

`cpu_ms` and `floor_cpu_ms` are what a request of each load cost the whole machine in CPU time (both cores, every
process on them), and `cpu_vs_floor` their ratio: the two cores are the limit under 16 clients, so it is the figure
`vs_floor` tends to, and it moves far less than the rates from one run to the next on a machine whose speed does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, add_arguments, percentile, setup

CLIENTS = 16
CARDHOLDERS = 9_000  # enough codes for 20 s at ~400 payments/s; more for longer runs (see main)
GUNICORN_WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "2"))


def seed_many(cardholders: int) -> dict[str, Any]:
    """Banks, channels and a merchant as in the other benchmarks, then many cardholders with one card each (bulk:
    the benchmark's own fixture, not a domain flow)."""
    import datetime as dt

    from django.contrib.auth import get_user_model
    from workloads import seed

    from members.models import Card, Cardholder, CardProduct

    seeded = seed()
    products = list(CardProduct.objects.order_by("id"))
    user_model = get_user_model()
    users = user_model.objects.bulk_create(user_model(username=f"load{i}") for i in range(cardholders))
    holders = Cardholder.objects.bulk_create(
        Cardholder(user=u, display_name=f"Load {i}", phone_encrypted="x", phone_hash=f"l{i:063d}", phone_last4="0000")
        for i, u in enumerate(users)
    )
    Card.objects.bulk_create(
        Card(
            cardholder=h,
            bank_id=products[i % 3].bank_id,
            product=products[i % 3],
            token=f"card_load_{i}",
            bin="62260000",
            last4=f"{i % 10000:04d}",
            fingerprint=f"lf{i:062d}",
            expiry_month=12,
            expiry_year=dt.date.today().year + 3,
            status="active",
        )
        for i, h in enumerate(holders)
    )
    # Returning cardholders, as in real traffic: each already holds points, so its ledger accounts exist.
    from members.models import PointsProgram
    from rewards.services import EarnEvent, bank_points_account, debt_account, points_earn_bulk

    programs = {p.bank_id: p for p in PointsProgram.objects.all()}
    events = [
        EarnEvent(cardholder_id=h.pk, program_id=programs[products[i % 3].bank_id].pk, amount=100)
        for i, h in enumerate(holders)
    ]
    points_earn_bulk(events=events, idempotency_key="load-welcome-points")
    for i, h in enumerate(holders):
        debt_account(h.pk, programs[products[i % 3].bank_id])
    for program in programs.values():
        for shard in range(8):
            bank_points_account(program, "issuance", shard)
    return seeded


def make_codes() -> list[str]:
    """One live payment code per cardholder, made through the service (valid 60 s: made just before use)."""
    from members.models import Card
    from payments import methods

    codes = []
    for card in Card.objects.filter(token__startswith="card_load_").select_related("cardholder").iterator():
        codes.append(methods.payment_code_generate(cardholder=card.cardholder, card=card).code)
    return codes


def settle(*, checkpoint: bool = False) -> None:
    """Vacuums and analyses (and checkpoints) between steps, so that a measured load does not pay for what the step
    before it left due: an autovacuum of the tables the payments wrote, or a checkpoint, starting at a random moment
    of the floor's load moved its rate by a third from run to run. The one checkpoint is made after seeding, before the
    payment codes: the next one (by time, every 5 minutes) falls after the run, and each load writes far less WAL than
    makes one due. No checkpoint between the loads: right after one, every page a load touches first is written whole
    to the WAL, which would weigh on the load that touches more pages.

    The analyse after the single client's payments stands in for autovacuum's, which this machine's PostgreSQL runs
    without: statistics taken while the payments' tables were empty make every server process plan its cached plans
    (the foreign-key checks' among them) as sequential scans — right for an empty table, and kept, since only a new
    analyse invalidates those plans. In production autovacuum analyses a table once a tenth of it has changed; without
    it here, the lookups of one payment by id read every row written so far (24 million rows read in a 20-second run,
    a third of the database CPU a payment cost)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        if checkpoint:
            cursor.execute("CHECKPOINT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gunicorn(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "floor_settings",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}",
        "API_RATE_PER_KEY": "1000000/second",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")), "settings.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", str(GUNICORN_WORKERS), "--worker-class", "sync", "--keep-alive", "30", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not start")


def drive(port: int, key: str, path: str, bodies: list[list[dict[str, Any]]], seconds: float, out: Any) -> None:
    """The load process: one thread per client, each with its own keep-alive connection and its own bodies."""
    latencies: list[float] = []
    statuses: list[int] = []
    ids: list[str] = []
    lock = threading.Lock()
    deadline = time.time() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n, body in enumerate(bodies[index]):
            if time.time() >= deadline:
                break
            payload = json.dumps(body)
            headers = {
                "Authorization": f"Bearer {key}", "Content-Type": "application/json",
                "Idempotency-Key": f"{path}-{index}-{n}-{os.getpid()}",
            }  # fmt: skip
            started = time.perf_counter()
            connection.request("POST", path, payload, headers)
            response = connection.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(response.status)
                if response.status in (200, 201):
                    ids.append(json.loads(data).get("id", ""))
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put({"latencies": latencies, "statuses": statuses, "ids": ids, "elapsed": time.perf_counter() - started})


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far (every process: server, database, Redis, load generator), from
    /proc/stat; 0 where there is none."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user … softirq, steal; not guest (counted in user)


def run_load(port: int, key: str, path: str, bodies: list[list[dict[str, Any]]], seconds: float) -> dict[str, Any]:
    """One load; `cpu_ms` is the machine's busy CPU time per request over it (start-up of the load process included,
    a few milliseconds over thousands of requests)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=drive, args=(port, key, path, bodies, seconds, queue))
    busy = busy_seconds()
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    result["cpu_ms"] = (busy_seconds() - busy) * 1000 / max(len(result["latencies"]), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    add_arguments(parser)
    args = parser.parse_args()
    # Redis is part of what is measured: throttling, counters, breakers, and the events queued for a webhook worker
    # that is not running.
    bench_run = setup("api", args, redis="required")
    from merchants.models import Event, Merchant
    from merchants.services import api_key_create
    from payments.models import PaymentIntent

    seeded = seed_many(max(CARDHOLDERS, int(args.seconds * 400) + 1_000))
    merchant = Merchant.objects.get(pk=seeded["merchant_id"])
    key = api_key_create(merchant=merchant, mode="live", scope="write").raw_key
    port = free_port()
    server = start_gunicorn(port)
    try:
        settle(checkpoint=True)
        codes = make_codes()
        pay = [
            {
                "amount": 10_000,
                "currency": "CNY",
                "confirm": True,
                "payment_method": {"type": "payment_code", "code": c},
            }
            for c in codes
        ]
        one = run_load(port, key, "/api/v1/payments", [pay[:300]], min(args.seconds / 4, 5))
        settle()  # the payments' tables now have rows: their statistics say so before the measured load (below)
        many = run_load(port, key, "/api/v1/payments", [pay[300 + i :: CLIENTS] for i in range(CLIENTS)], args.seconds)
        settle()
        floor_bodies = [[{"note": f"{i}-{n}"} for n in range(100_000)] for i in range(CLIENTS)]
        floor = run_load(port, key, "/bench/floor", floor_bodies, args.seconds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    # Side effects: every 201 is a captured payment with its points and its event in the outbox.
    for run in (one, many):
        assert set(run["statuses"]) == {201}, sorted(set(run["statuses"]))
    paid = one["ids"] + many["ids"]
    captured = PaymentIntent.objects.filter(public_id__in=paid, status="succeeded", points_earned__gt=0).count()
    assert captured == len(paid), (captured, len(paid))
    assert Event.objects.filter(type="payment.succeeded").count() >= len(paid)
    assert len(pay) > len(paid), "the clients ran out of payment codes: seed more cardholders"
    assert set(floor["statuses"]) == {201}, sorted(set(floor["statuses"]))

    tps = len(many["latencies"]) / many["elapsed"]
    floor_tps = len(floor["latencies"]) / floor["elapsed"]
    p50_1c = percentile(one["latencies"], 0.5) * 1000
    p50, p99 = percentile(many["latencies"], 0.5) * 1000, percentile(many["latencies"], 0.99) * 1000
    print(
        f"{len(many['latencies'])} payments from {CLIENTS} clients in {many['elapsed']:.1f}s; "
        f"floor {len(floor['latencies'])} in {floor['elapsed']:.1f}s; single client {len(one['latencies'])}"
    )
    print(
        f"BENCH api tps={tps:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} p50_1c_ms={p50_1c:.1f} "
        f"floor_tps={floor_tps:.0f} vs_floor={tps / floor_tps:.2f} "
        f"cpu_ms={many['cpu_ms']:.2f} floor_cpu_ms={floor['cpu_ms']:.2f} "
        f"cpu_vs_floor={floor['cpu_ms'] / many['cpu_ms']:.2f} redis={bench_run.redis}"
    )


if __name__ == "__main__":
    main()
