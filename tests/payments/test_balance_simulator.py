"""Balance payments against the simulator's accounts: hold on authorise, take on capture, release on cancel."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from django.db import connection

from payments import selectors, services
from payments.models import PaymentIntent
from tests.factories import ChannelFactory, MerchantFactory, make_cardholder, make_linked_account

_keys = itertools.count()
Status = PaymentIntent.Status


def _wallet(sim: Any, balance: int) -> dict[str, Any]:
    cardholder = make_cardholder()
    account = make_linked_account(cardholder=cardholder)
    channel = ChannelFactory(
        acquirer=account.bank, kind="wallet", code="wallet-x", remote_id="wallet-x", connector="simulator"
    )
    sim.open_account(channel="wallet-x", currency="CNY", balance=balance, account_id=account.reference)
    return {"cardholder": cardholder, "account": account, "channel": channel, "merchant": MerchantFactory()}


def pay(world: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["cardholder"],
        linked_account=world["account"],
        amount=amount,
        currency="CNY",
        idempotency_key=f"bal-{next(_keys)}",
        confirm=True,
        **kw,
    )


@pytest.mark.django_db
def test_authorise_holds_capture_takes_cancel_releases(sim: Any) -> None:
    world = _wallet(sim, 10_000)
    held = pay(world, 3_000, capture_method="manual")
    assert (held.status, held.method, held.channel.code) == (Status.REQUIRES_CAPTURE, "balance", "wallet-x")
    account = sim.account(world["account"].reference)
    assert (account.balance, account.held, account.available) == (10_000, 3_000, 7_000)
    services.payment_capture(merchant=world["merchant"], payment_id=held.public_id, idempotency_key="c1", amount=2_000)
    account = sim.account(world["account"].reference)
    assert (account.balance, account.held, account.available) == (8_000, 0, 8_000)
    other = pay(world, 1_000, capture_method="manual")
    services.payment_cancel(merchant=world["merchant"], payment_id=other.public_id, idempotency_key="v1")
    account = sim.account(world["account"].reference)
    assert (account.balance, account.held) == (8_000, 0)
    too_much = pay(world, 9_000)
    assert (too_much.status, too_much.failure_code) == (Status.FAILED, "insufficient_funds")
    rows = selectors.linked_balances(cardholder=world["cardholder"])
    assert [(row.account, row.available, row.error) for row in rows] == [(world["account"], 8_000, "")]


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_payments_never_overdraw_and_agree_with_the_simulator(sim: Any) -> None:
    world = _wallet(sim, 10_000)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(30)

    def one() -> None:
        try:
            barrier.wait()
            intent = pay(world, 500)
            with lock:
                results.append(intent.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted([Status.SUCCEEDED] * 20 + [Status.FAILED] * 10)
    payments = PaymentIntent.objects.filter(linked_account=world["account"])
    assert set(payments.filter(status=Status.FAILED).values_list("failure_code", flat=True)) == {"insufficient_funds"}
    captured = sum(payments.values_list("amount_captured", flat=True))
    account = sim.account(world["account"].reference)
    assert captured == 10_000
    assert (account.balance, account.held, account.available) == (0, 0, 0)
