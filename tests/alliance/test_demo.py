"""The demo alliance: created through the services, complete enough to explore, and idempotent."""

from __future__ import annotations

import io
from typing import Any

import pytest

from alliance.demo import DemoContext, seed_all
from payments.connectors import reset_connectors

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    from core.models import AuditLog
    from members.models import Card, Cardholder, MemberBank
    from merchants.models import ApiKey, Merchant, Store
    from payments.models import Channel, FeeSchedule, FeeSplit, PaymentIntent, Refund, RiskRule, RoutingRule

    return {
        "banks": MemberBank.objects.count(),
        "cardholders": Cardholder.objects.count(),
        "cards": Card.objects.count(),
        "merchants": Merchant.objects.count(),
        "channels": Channel.objects.count(),
        "rules": RoutingRule.objects.count(),
        "payments": PaymentIntent.objects.count(),
        "refunds": Refund.objects.count(),
        "audit": AuditLog.objects.count(),
        "api_keys": ApiKey.objects.count(),
        "stores": Store.objects.count(),
        "fee_schedules": FeeSchedule.objects.count(),
        "fee_splits": FeeSplit.objects.count(),
        "risk_rules": RiskRule.objects.count(),
        "method_payments": PaymentIntent.objects.filter(metadata__demo_method=True).count(),
    }


def test_seed_demo_builds_the_alliance_through_the_simulator_and_a_second_run_adds_nothing(
    simulator: Any, simulator_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from payments import demo as payments_demo
    from payments.models import Channel, PaymentIntent

    settings.SIMULATOR = {
        **settings.SIMULATOR,
        "URL": simulator_server.url,
        "KEY_ID": simulator_server.key_id,
        "SECRET": simulator_server.secret,
    }
    reset_connectors()
    monkeypatch.setitem(payments_demo.HISTORY, "small", 60)
    out = io.StringIO()
    ctx = seed_all(DemoContext(scale="small", out=out))
    first = _counts()
    assert first["banks"] == 6
    assert first["cardholders"] >= 200
    assert first["merchants"] == 5
    assert first["channels"] == 16  # 8 live channels, each with a sandbox twin for test-mode payments
    assert Channel.objects.filter(sandbox=True).count() == 8
    routed = PaymentIntent.objects.exclude(channel=None)
    assert routed.filter(livemode=False).exists()
    assert not routed.filter(livemode=False, channel__sandbox=False).exists()
    assert not routed.filter(livemode=True, channel__sandbox=True).exists()
    assert first["rules"] == 3
    assert first["payments"] == 60 + first["method_payments"]
    assert first["method_payments"] >= 25  # 20 payment codes and 5 agreements, plus wallet balances
    assert first["fee_schedules"] == 5
    assert first["fee_splits"] > 0
    assert first["risk_rules"] == 7
    by_method = set(PaymentIntent.objects.filter(status="succeeded").values_list("method", flat=True))
    assert {"card", "payment_code", "agreement", "balance"} <= by_method
    assert first["refunds"] >= 1
    statuses = set(PaymentIntent.objects.values_list("status", flat=True))
    assert {"succeeded", "failed", "canceled"} <= statuses
    assert ("cardholder (portal, cards at 3 banks)", "demo") in [(role, user) for role, user, _ in ctx.logins]
    assert first["api_keys"] == 5
    assert first["stores"] == 10  # a first store in each mode
    # A tenth of the history is the printed test keys' sandbox; the rest (and every method payment) is live.
    assert PaymentIntent.objects.filter(metadata__demo=True, livemode=False).count() == 6
    assert not PaymentIntent.objects.filter(metadata__demo_method=True, livemode=False).exists()
    assert sum(1 for _what, code in ctx.codes if code.startswith("sk_test_")) == 5
    seed_all(DemoContext(scale="small", out=io.StringIO()))
    assert _counts() == first
    reset_connectors()
