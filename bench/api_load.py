"""Merchant API benchmark: POST /api/v1/payments (create + confirm + capture, points earned) through the whole HTTP
stack in-process (WSGI handler, key authentication, throttle, idempotency record, serializers, webhook event), against
its floor: the same payments through the services directly, by the same workers in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/api_load.py [--seconds 20]

Last line: BENCH api_load rps=... p50_ms=... p99_ms=... floor_tps=... vs_floor=... list_p50_ms=...
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from typing import Any

from common import describe, run_workers, setup_django
from workloads import WORKERS, pay_worker, seed


def api_worker(seeded: dict[str, Any], raw_key: str) -> Any:
    def work(index: int, deadline: float) -> list[float]:
        from django.test import Client

        from members.models import Card

        tokens = list(Card.objects.filter(pk__in=seeded["card_ids"]).values_list("token", flat=True))
        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        latencies = []
        for n in itertools.count():
            if time.time() >= deadline:
                break
            body = {
                "amount": 10_000 + n % 50,
                "currency": "CNY",
                "confirm": True,
                "payment_method": {"type": "card_token", "token": tokens[(index * 7919 + n) % len(tokens)]},
            }
            started = time.perf_counter()
            response = client.post(
                "/api/v1/payments", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"api-{index}-{n}"
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.content
            assert response.json()["status"] == "succeeded"
        return latencies

    return work


def list_worker(raw_key: str) -> Any:
    def work(index: int, deadline: float) -> list[float]:
        from django.test import Client

        client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        latencies = []
        while time.time() < deadline:
            started = time.perf_counter()
            response = client.get("/api/v1/payments", {"limit": 100, "status": "succeeded"})
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            assert len(response.json()["data"]) == 100
        return latencies

    return work


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args()
    os.environ["API_RATE_PER_KEY"] = "1000000/second"  # measure the API, not the limiter's refusals
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    setup_django("mengka_bench_api")
    from django.db.models import Sum

    from merchants.models import Event, Merchant
    from merchants.services import api_key_create
    from payments.models import PaymentIntent
    from rewards.models import Account

    seeded = seed()
    raw_key = api_key_create(merchant=Merchant.objects.get(pk=seeded["merchant_id"])).raw_key
    operations, latencies, elapsed = run_workers(args.workers, args.seconds, api_worker(seeded, raw_key))
    succeeded = PaymentIntent.objects.filter(status="succeeded", points_earned__gt=0).count()
    assert succeeded == operations, (succeeded, operations)
    assert Event.objects.filter(type="payment.succeeded").count() == operations
    earned = PaymentIntent.objects.aggregate(total=Sum("points_earned"))["total"]
    posted = Account.objects.filter(owner_kind="cardholder", purpose="points").aggregate(total=Sum("posted"))["total"]
    assert earned == posted, (earned, posted)
    figures = describe(latencies)
    floor_ops, _, floor_elapsed = run_workers(args.workers, args.seconds, pay_worker(seeded))
    _list_ops, list_latencies, _ = run_workers(args.workers, max(args.seconds / 4, 2), list_worker(raw_key))
    rps, floor_tps = operations / elapsed, floor_ops / floor_elapsed
    print(f"API: {operations} payments in {elapsed:.1f}s; services: {floor_ops} in {floor_elapsed:.1f}s")
    print(
        f"BENCH api_load rps={rps:.0f} p50_ms={figures['p50_ms']} p99_ms={figures['p99_ms']} "
        f"floor_tps={floor_tps:.0f} vs_floor={rps / floor_tps:.2f} list_p50_ms={describe(list_latencies)['p50_ms']}"
    )


if __name__ == "__main__":
    main()
