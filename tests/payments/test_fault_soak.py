"""The routing fault soak: 2,000 payments from 8 workers through the simulator while it injects 30% faults, including
charged-then-timeout and a channel that goes down and comes back. Afterwards our records and the simulator's journal
must agree: no double charge, no payment in an unknown state, every charge matched by a payment."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from payments import services
from payments.connectors import reset_connectors
from payments.health import BreakerState, InProcessHealth, set_health_store
from payments.models import PaymentAttempt, PaymentIntent
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PAYMENTS = 2_000
WORKERS = 8
REMOTE = {"up-a": "acq-unionpay-a", "bank-b": "acq-bank-b", "wallet-x": "wallet-x"}


class RecordingHealth(InProcessHealth):
    """The in-process store, remembering every breaker state it reported (to prove open → closed happened)."""

    def __init__(self) -> None:
        super().__init__()
        self.transitions: list[tuple[str, str]] = []

    def record(self, channel: str, method: str, success: bool, policy: Any) -> BreakerState:
        state = super().record(channel, method, success, policy)
        if not self.transitions or self.transitions[-1] != (channel, state):
            self.transitions.append((channel, state))
        return state


@pytest.fixture
def soak(simulator: Any, simulator_server: Any, settings: Any) -> Iterator[dict[str, Any]]:
    settings.SIMULATOR = {
        "URL": simulator_server.url,
        "KEY_ID": simulator_server.key_id,
        "SECRET": simulator_server.secret,
        "CONNECT_TIMEOUT": 1.0,
        "READ_TIMEOUT": 2.0,
    }
    reset_connectors()
    health = RecordingHealth()
    set_health_store(health)
    issuer = MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    cards = [CardFactory(product=CardProductFactory(bank=issuer)) for _ in range(40)]
    merchant = MerchantFactory(sponsor_bank=issuer, spend_category="other")
    for index, (code, remote) in enumerate(REMOTE.items()):
        ChannelFactory(
            code=code,
            remote_id=remote,
            acquirer=MemberBankFactory(),
            connector="simulator",
            fee_percent=f"0.{index + 2}",
            currencies=["CNY"],
            breaker_consecutive_failures=4,
            breaker_failure_rate="0.9",
            breaker_window=20,
            breaker_cooldown_seconds=1,
        )
    # 30% faults on every channel: declines, errors, timeouts before the charge and charges that then time out.
    for remote in REMOTE.values():
        simulator.set_faults(
            remote,
            decline_rate=0.08,
            error_rate=0.1,
            timeout_rate=0.06,
            charged_timeout_rate=0.06,
            triggers=False,
            hang_ms=200,
        )
    yield {"sim": simulator, "cards": cards, "merchant": merchant, "health": health}
    reset_connectors()


def test_fault_soak_leaves_no_double_charge_and_no_unknown_state(soak: dict[str, Any]) -> None:
    sim, cards, merchant = soak["sim"], soak["cards"], soak["merchant"]
    counter = iter(range(PAYMENTS))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def next_index() -> int | None:
        with lock:
            return next(counter, None)

    def worker() -> None:
        try:
            while (index := next_index()) is not None:
                card = cards[index % len(cards)]
                services.payment_create(
                    merchant=merchant,
                    cardholder=card.cardholder,
                    card=card,
                    amount=1_000 + (index % 50),
                    currency="CNY",
                    idempotency_key=f"soak-{index}",
                    confirm=True,
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def outage() -> None:
        time.sleep(3)
        sim.set_faults("acq-unionpay-a", down=True)
        time.sleep(4)
        sim.set_faults("acq-unionpay-a", down=False)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)] + [threading.Thread(target=outage)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert PaymentIntent.objects.count() == PAYMENTS

    # Settle what timed out, as the beat job would, until nothing is unknown.
    for _ in range(5):
        if not PaymentAttempt.objects.filter(status__in=PaymentAttempt.UNRESOLVED).exists():
            break
        services.attempts_resolve(older_than=timedelta(0))
    assert PaymentAttempt.objects.filter(status__in=PaymentAttempt.UNRESOLVED).count() == 0
    statuses = Counter(PaymentIntent.objects.values_list("status", flat=True))
    assert set(statuses) <= {"succeeded", "failed"}, statuses

    # The simulator's journal against our records: every standing charge belongs to a succeeded payment, once.
    standing: Counter[str] = Counter()
    journal = [row for remote in REMOTE.values() for row in sim.journal_all(channel=remote)]
    charged_refs = {
        row["reference"] for row in journal if row["op"] == "sale" and row["outcome"] in ("ok", "charged_timeout")
    }
    attempts = {a.reference: a for a in PaymentAttempt.objects.select_related("intent", "channel")}
    for reference in charged_refs:
        attempt = attempts.get(reference)
        assert attempt is not None, f"a charge with no payment: {reference}"
        state = sim.payment_status(channel=attempt.channel.remote_id, reference=reference).state
        if state in ("captured", "authorised"):
            standing[attempt.intent.public_id] += 1
            assert attempt.intent.status == "succeeded", (reference, attempt.intent.status)
            assert attempt.status == "captured"
    succeeded = set(PaymentIntent.objects.filter(status="succeeded").values_list("public_id", flat=True))
    assert set(standing) == succeeded  # every succeeded payment has its charge …
    assert max(standing.values()) == 1  # … and only one

    # Fallback happened, charged-then-timeout was adopted, and the breaker opened and closed again.
    fallbacks = PaymentIntent.objects.filter(status="succeeded", attempts__sequence=2).distinct().count()
    assert fallbacks > 0
    assert any(row["outcome"] == "charged_timeout" for row in journal)
    transitions = [state for channel, state in soak["health"].transitions if channel == "up-a"]
    assert BreakerState.OPEN in transitions
    assert transitions[-1] == BreakerState.CLOSED or _probe_closes(soak)
    assert django_settings.ROUTING_CONFIG_TTL == 0.0


def _probe_closes(soak: dict[str, Any]) -> bool:
    time.sleep(1.1)
    return services.channels_probe().get("up-a") == "closed"
