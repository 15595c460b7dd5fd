"""Routing benchmark: the cost of a decision, and what routing costs a whole payment.

1. decisions per second and p99 in µs with 20 channels and 50 rules, cached configuration, one process;
2. end-to-end payment tps (bench/payments.py's workload) with routing on (20 channels, 50 rules) versus a single
   fixed channel and no rules, in the same run.

    .venv/bin/python bench/routing.py [--seconds 15] [--redis URL|none] [--database NAME] [--keep]

Its database and Redis db are its own (bench/common.py). Last line:
BENCH routing decisions_per_s=... p99_us=... tps_routed=... tps_fixed=... vs_fixed=... redis=...
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from common import add_arguments, percentile, run_workers, setup
from workloads import WORKERS, pay_worker, seed, verify


def decisions(seconds: float) -> tuple[float, float]:
    from payments import routing
    from payments.health import InProcessHealth

    config = routing.load_config(force=True)
    assert len(config.channels) == 20, len(config.channels)
    assert len(config.rules) == 50, len(config.rules)
    health = InProcessHealth()
    context = routing.RouteContext(
        merchant_id=1,
        mcc="5812",
        amount=10_000,
        currency="CNY",
        method="card",
        issuer_id=None,
        local_time=dt.time(12),
    )
    timings = []
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter_ns()
        decision = routing.decide(context, config, health)
        timings.append(time.perf_counter_ns() - started)
        count += 1
    assert decision.order, "the last rule matches: a decision must choose channels"
    total_s = sum(timings) / 1e9
    return count / total_s, percentile([t / 1000 for t in timings], 0.99)


ROUNDS = 4


def configure(mode: str) -> None:
    """routed: 20 channels and 50 rules; fixed: one channel and no rules."""
    from payments import services
    from payments.models import Channel, RoutingRule

    RoutingRule.objects.update(enabled=mode == "routed")
    Channel.objects.update(enabled=mode == "routed")
    Channel.objects.filter(code="bench-00").update(enabled=True)
    services.routing_config_changed()
    time.sleep(1.1)  # past ROUTING_CONFIG_TTL, so no process keeps the other configuration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    add_arguments(parser)
    args = parser.parse_args()

    run = setup("routing", args)
    routed_seed = seed(channels=20, rules=50)
    per_s, p99_us = decisions(min(args.seconds, 5))
    print(f"decisions: {per_s:.0f}/s, p99 {p99_us:.1f} µs")

    # Alternate routed and fixed rounds so that both see the same machine load.
    totals = {"routed": [0, 0.0], "fixed": [0, 0.0]}
    for round_index in range(ROUNDS):
        for mode in ("routed", "fixed") if round_index % 2 == 0 else ("fixed", "routed"):
            configure(mode)
            ops, _, elapsed = run_workers(
                WORKERS, args.seconds / ROUNDS, pay_worker(routed_seed, f"{mode}{round_index}")
            )
            totals[mode][0] += ops
            totals[mode][1] += elapsed
    routed_ops, routed_elapsed = totals["routed"]
    fixed_ops, fixed_elapsed = totals["fixed"]
    verify(int(routed_ops + fixed_ops))
    tps_routed = routed_ops / routed_elapsed
    tps_fixed = fixed_ops / fixed_elapsed
    print(f"routed: {routed_ops} payments in {routed_elapsed:.1f}s; fixed: {fixed_ops} in {fixed_elapsed:.1f}s")
    print(
        f"BENCH routing decisions_per_s={per_s:.0f} p99_us={p99_us:.1f} tps_routed={tps_routed:.0f} "
        f"tps_fixed={tps_fixed:.0f} vs_fixed={tps_routed / tps_fixed:.2f} redis={run.redis}"
    )


if __name__ == "__main__":
    main()
