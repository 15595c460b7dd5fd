"""Balance accounts at banks, wallets and the prepaid issuer: inquiry, holds, capture, release, no overdraft."""

from __future__ import annotations

import threading

import pytest

from simulator.client import SimulatorClient, SimulatorError
from tests.simulator_fixtures import SimulatorProcess

WALLET = "wallet-x"


def refusal(call, *args, **kw) -> SimulatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulatorError) as caught:
        call(*args, **kw)
    return caught.value


@pytest.fixture
def account(simulator: SimulatorClient):  # type: ignore[no-untyped-def]
    return simulator.open_account(channel=WALLET, account_id="w-1", currency="CNY", balance=10000, holder="Li Lei")


def test_open_and_inquire(simulator: SimulatorClient, account) -> None:  # type: ignore[no-untyped-def]
    assert (account.id, account.balance, account.held, account.available) == ("w-1", 10000, 0, 10000)
    again = simulator.open_account(channel=WALLET, account_id="w-1", currency="CNY", balance=10000, holder="Li Lei")
    assert again.replayed is True
    other = refusal(simulator.open_account, channel=WALLET, account_id="w-1", currency="HKD", balance=1)
    assert (other.status, other.code) == (409, "idempotency_mismatch")
    looked_up = simulator.account("w-1")
    assert (looked_up.channel, looked_up.holder, looked_up.available) == (WALLET, "Li Lei", 10000)
    generated = simulator.open_account(channel="prepaid-x", currency="CNY", balance=0)
    assert generated.id.startswith("acct_")


def test_open_refusals(simulator: SimulatorClient) -> None:
    assert refusal(simulator.open_account, channel="acq-unionpay-a", currency="CNY", balance=1).code == (
        "not_a_balance_channel"
    )
    assert refusal(simulator.open_account, channel=WALLET, currency="USD", balance=1).code == "currency_not_supported"
    assert refusal(simulator.open_account, channel=WALLET, currency="CNY", balance=-1).code == "invalid_amount"
    assert refusal(simulator.account, "missing").status == 404


def test_hold_capture_partial_releases_the_rest(simulator: SimulatorClient, account) -> None:  # type: ignore[no-untyped-def]
    hold = simulator.hold(account_id="w-1", reference="h-1", amount=6000)
    assert (hold.state, hold.amount) == ("held", 6000)
    assert (simulator.account("w-1").held, simulator.account("w-1").available) == (6000, 4000)
    captured = simulator.capture_hold(hold.id, amount=2500)
    assert (captured.state, captured.captured_amount, captured.released_amount) == ("captured", 2500, 3500)
    after = simulator.account("w-1")
    assert (after.balance, after.held, after.available) == (7500, 0, 7500)
    assert simulator.capture_hold(hold.id, amount=2500).replayed is True
    assert refusal(simulator.capture_hold, hold.id, amount=1000).code == "already_captured"
    assert refusal(simulator.release_hold, hold.id).code == "invalid_state"
    assert simulator.account("w-1").balance == 7500


def test_release_and_replays(simulator: SimulatorClient, account) -> None:  # type: ignore[no-untyped-def]
    hold = simulator.hold(account_id="w-1", reference="h-1", amount=4000)
    replay = simulator.hold(account_id="w-1", reference="h-1", amount=4000)
    assert (replay.id, replay.replayed) == (hold.id, True)
    assert simulator.account("w-1").held == 4000
    assert refusal(simulator.hold, account_id="w-1", reference="h-1", amount=4001).code == "idempotency_mismatch"
    released = simulator.release_hold(hold.id)
    assert (released.state, released.released_amount) == ("released", 4000)
    assert simulator.release_hold(hold.id).replayed is True
    assert refusal(simulator.capture_hold, hold.id).code == "invalid_state"
    assert simulator.account("w-1").available == 10000
    assert simulator.hold_status(account_id="w-1", reference="h-1").state == "released"
    assert simulator.hold_status(account_id="w-1", reference="h-x").state == "not_found"


def test_overdraft_is_refused_with_a_clear_code(simulator: SimulatorClient, account) -> None:  # type: ignore[no-untyped-def]
    simulator.hold(account_id="w-1", reference="h-1", amount=9000)
    error = refusal(simulator.hold, account_id="w-1", reference="h-2", amount=1001)
    assert (error.status, error.code, error.type, error.param) == (422, "insufficient_funds", "refused", "amount")
    assert simulator.hold(account_id="w-1", reference="h-3", amount=1000).state == "held"
    assert simulator.account("w-1").available == 0
    hold = simulator.hold_status(account_id="w-1", reference="h-1")
    assert refusal(simulator.capture_hold, hold.id, amount=9001).code == "amount_exceeds_held"


def test_hold_refusals(simulator: SimulatorClient, account) -> None:  # type: ignore[no-untyped-def]
    assert refusal(simulator.hold, account_id="nobody", reference="h", amount=1).code == "account_not_found"
    assert refusal(simulator.hold, account_id="w-1", reference="h", amount=1, currency="HKD").code == (
        "currency_mismatch"
    )
    assert refusal(simulator.hold, account_id="w-1", reference="h", amount=0).code == "invalid_amount"
    assert refusal(simulator.capture_hold, "hold_missing").code == "hold_not_found"


def test_balance_payment_through_the_payments_api(simulator: SimulatorClient, account) -> None:  # type: ignore[no-untyped-def]
    instrument = {"kind": "account", "account_id": "w-1"}
    pay = simulator.authorise(channel=WALLET, reference="bp-1", amount=3000, currency="CNY", instrument=instrument)
    assert (pay.state, simulator.account("w-1").held) == ("authorised", 3000)
    assert refusal(simulator.capture_hold, pay.hold_id).code == "hold_owned_by_payment"
    simulator.capture(channel=WALLET, reference="bp-1", amount=2000)
    assert (simulator.account("w-1").balance, simulator.account("w-1").held) == (8000, 0)
    simulator.refund(channel=WALLET, reference="bp-1", refund_reference="r1", amount=500)
    assert simulator.account("w-1").balance == 8500
    simulator.reverse(channel=WALLET, reference="bp-1")
    assert simulator.account("w-1").balance == 10000

    short = simulator.authorise(channel=WALLET, reference="bp-2", amount=10001, currency="CNY", instrument=instrument)
    assert (short.state, short.decline_code) == ("declined", "insufficient_funds")
    voided = simulator.authorise(channel=WALLET, reference="bp-3", amount=10000, currency="CNY", instrument=instrument)
    simulator.void(channel=WALLET, reference=voided.reference)
    assert simulator.account("w-1").available == 10000
    unknown = simulator.authorise(
        channel=WALLET, reference="bp-4", amount=1, currency="CNY", instrument={"kind": "account", "account_id": "zz"}
    )
    assert (unknown.state, unknown.decline_code) == ("declined", "invalid_account")


def test_concurrent_holds_never_overdraw(simulator: SimulatorClient, simulator_server: SimulatorProcess) -> None:
    """40 threads each hold 300 against 10,000: exactly 33 succeed, 7 are refused, the balance is exact."""
    simulator.open_account(channel="debit-icbc", account_id="race", currency="CNY", balance=10000)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def worker(n: int) -> None:
        with simulator_server.client() as client:
            barrier.wait()
            try:
                hold = client.hold(account_id="race", reference=f"r-{n}", amount=300)
                client.capture_hold(hold.id)
                outcome = "ok"
            except SimulatorError as exc:
                outcome = exc.code
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["insufficient_funds"] * 7 + ["ok"] * 33
    final = simulator.account("race")
    assert (final.balance, final.held, final.available) == (100, 0, 100)
    captured = simulator.journal_all(channel="debit-icbc", op="hold_capture")
    assert sum(r["money"] for r in captured) == 9900
