"""Fault injection: the deterministic triggers, charged-then-timed-out resolved by inquiry, the per-channel profile."""

from __future__ import annotations

import time

import pytest

from simulator.client import SimulatorClient, SimulatorError, SimulatorTimeout

ACQ = "acq-unionpay-a"
CARD = {"kind": "card", "token": "tok_1"}


def pay(sim: SimulatorClient, reference: str, amount: int, **kw):  # type: ignore[no-untyped-def]
    return sim.authorise(channel=ACQ, reference=reference, amount=amount, currency="CNY", instrument=CARD, **kw)


@pytest.mark.parametrize(
    ("amount", "decline_code"), [(10051, "do_not_honour"), (252, "insufficient_funds"), (56, "suspected_fraud")]
)
def test_decline_triggers(simulator: SimulatorClient, amount: int, decline_code: str) -> None:
    payment = pay(simulator, "p", amount, capture=True)
    assert (payment.state, payment.decline_code, payment.captured_amount, payment.auth_code) == (
        "declined", decline_code, 0, None,
    )  # fmt: skip
    assert pay(simulator, "p", amount, capture=True).replayed is True  # a replay returns the decline, not a new try
    [row, replay] = simulator.journal_all(channel=ACQ, reference="p")
    assert (row["outcome"], row["code"], row["money"], replay["outcome"]) == ("declined", decline_code, 0, "replayed")


def test_error_trigger_charges_nothing(simulator: SimulatorClient) -> None:
    with pytest.raises(SimulatorError) as caught:
        pay(simulator, "p", 1053)
    assert (caught.value.status, caught.value.code, caught.value.type) == (500, "channel_error", "channel_error")
    assert simulator.payment_status(channel=ACQ, reference="p").state == "not_found"
    [row] = simulator.journal_all(channel=ACQ, op="authorise")
    assert (row["outcome"], row["http_status"], row["money"]) == ("error", 500, 0)


def test_timeout_before_charge(simulator: SimulatorClient) -> None:
    with pytest.raises(SimulatorTimeout) as caught:
        pay(simulator, "p", 1054, capture=True)
    assert (caught.value.status, caught.value.code) == (504, "timeout")
    assert simulator.payment_status(channel=ACQ, reference="p").state == "not_found"
    [row] = simulator.journal_all(channel=ACQ, op="sale")
    assert (row["outcome"], row["http_status"], row["money"], row["object_id"]) == ("timeout", 504, 0, None)


def test_charged_then_timeout_is_resolved_by_inquiry_and_never_charged_twice(simulator: SimulatorClient) -> None:
    with pytest.raises(SimulatorTimeout):
        pay(simulator, "p", 1055, capture=True, timeout=0.1)  # the caller gives up before the channel answers
    status = simulator.payment_status(channel=ACQ, reference="p")
    assert (status.state, status.captured_amount) == ("captured", 1055)
    retried = pay(simulator, "p", 1055, capture=True)  # a safe retry: the same reference returns the original
    assert (retried.id, retried.state, retried.replayed) == (status.id, "captured", True)
    charges = [r for r in simulator.journal_all(channel=ACQ, reference="p") if r["money"]]
    assert [(r["outcome"], r["money"]) for r in charges] == [("charged_timeout", 1055)]


def test_charged_then_timeout_is_undone_by_reversal(simulator: SimulatorClient) -> None:
    with pytest.raises(SimulatorTimeout):
        pay(simulator, "p", 2055)
    assert simulator.payment_status(channel=ACQ, reference="p").state == "authorised"
    assert simulator.reverse(channel=ACQ, reference="p").state == "reversed"
    assert simulator.payment_status(channel=ACQ, reference="p").state == "reversed"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("fault-decline-1", "declined:do_not_honour"),
        ("fault-nsf-1", "declined:insufficient_funds"),
        ("fault-fraud-1", "declined:suspected_fraud"),
        ("fault-error-1", "error:channel_error"),
        ("fault-timeout-1", "timeout:not_found"),
        ("fault-charged-timeout-1", "timeout:authorised"),
    ],
)
def test_reference_triggers(simulator: SimulatorClient, reference: str, expected: str) -> None:
    try:
        payment = pay(simulator, reference, 10000)
        seen = f"{payment.state}:{payment.decline_code}"
    except SimulatorTimeout:
        seen = "timeout:" + simulator.payment_status(channel=ACQ, reference=reference).state
    except SimulatorError as exc:
        seen = f"error:{exc.code}"
    assert seen == expected


def test_hold_triggers(simulator: SimulatorClient) -> None:
    simulator.open_account(channel="prepaid-x", account_id="pp", currency="CNY", balance=100000)
    with pytest.raises(SimulatorError) as caught:
        simulator.hold(account_id="pp", reference="h1", amount=552)
    assert (caught.value.status, caught.value.code) == (422, "insufficient_funds")
    with pytest.raises(SimulatorError) as caught:
        simulator.hold(account_id="pp", reference="h2", amount=551)
    assert caught.value.code == "hold_refused"
    with pytest.raises(SimulatorTimeout):
        simulator.hold(account_id="pp", reference="h3", amount=555)
    assert simulator.hold_status(account_id="pp", reference="h3").state == "held"  # held, although the caller timed out
    with pytest.raises(SimulatorTimeout):
        simulator.hold(account_id="pp", reference="h4", amount=554)
    assert simulator.hold_status(account_id="pp", reference="h4").state == "not_found"
    assert simulator.account("pp").held == 555


def test_triggers_can_be_switched_off(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, triggers=False)
    assert pay(simulator, "p", 10051).state == "authorised"


def test_channel_down(simulator: SimulatorClient) -> None:
    channel = simulator.set_faults(ACQ, down=True)
    assert channel["faults"]["down"] is True
    for call in (lambda: pay(simulator, "p", 100), lambda: simulator.payment_status(channel=ACQ, reference="p")):
        with pytest.raises(SimulatorError) as caught:
            call()
        assert (caught.value.status, caught.value.code, caught.value.type) == (503, "channel_down", "channel_down")
    assert [r["outcome"] for r in simulator.journal_all(channel=ACQ)] == ["down", "down"]
    simulator.set_faults(ACQ, down=False)
    assert pay(simulator, "p", 100).state == "authorised"


def test_latency_is_applied(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, latency_ms=200)
    started = time.monotonic()
    simulator.payment_status(channel=ACQ, reference="p")
    assert time.monotonic() - started >= 0.2


def _run_with_dice(simulator: SimulatorClient) -> list[str]:
    simulator.set_faults(
        ACQ, decline_rate=0.2, error_rate=0.2, timeout_rate=0.1, charged_timeout_rate=0.1, hang_ms=0, seed=42
    )
    seen = []
    for n in range(30):
        try:
            seen.append(pay(simulator, f"dice-{n}", 1000 + n * 100).state)
        except SimulatorTimeout:
            seen.append("timeout:" + simulator.payment_status(channel=ACQ, reference=f"dice-{n}").state)
        except SimulatorError as exc:
            seen.append(exc.code)
    return seen


def test_seeded_random_faults_replay_exactly(simulator: SimulatorClient) -> None:
    first = _run_with_dice(simulator)
    simulator.reset()
    second = _run_with_dice(simulator)
    assert first == second
    assert {"authorised", "declined", "channel_error", "timeout:not_found", "timeout:authorised"} <= set(first)


@pytest.mark.parametrize(
    ("faults", "param"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"decline_rate": 0.6, "error_rate": 0.6}, "decline_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"down": "yes"}, "down"),
        ({"volume": 11}, "volume"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_fault_settings_are_refused_and_change_nothing(
    simulator: SimulatorClient, faults: dict, param: str
) -> None:
    before = [c for c in simulator.channels() if c["id"] == ACQ]
    with pytest.raises(SimulatorError) as caught:
        simulator.set_faults(ACQ, **faults)
    assert (caught.value.status, caught.value.code, caught.value.param) == (400, "invalid_faults", param)
    assert [c for c in simulator.channels() if c["id"] == ACQ] == before


def test_channels_are_configurable_at_runtime_and_reset_restores_the_file(simulator: SimulatorClient) -> None:
    ids = [c["id"] for c in simulator.channels()]
    assert ids == sorted(
        [
            "acq-unionpay-a",
            "acq-bank-b",
            "acq-global-c",
            "debit-icbc",
            "debit-cmb",
            "wallet-x",
            "prepaid-x",
            "ecny-x",
            "clearing-x",
        ]
    )
    created = simulator.put_channel(
        "debit-bocom",
        {"kind": "bank_debit", "name": "BoCom", "currencies": ["CNY"], "cutoff": "21:00", "faults": {"seed": 9}},
    )
    assert (created["kind"], created["cutoff"], created["faults"]["seed"]) == ("bank_debit", "21:00", 9)
    assert simulator.open_account(channel="debit-bocom", currency="CNY", balance=5).balance == 5
    with pytest.raises(SimulatorError) as caught:
        simulator.put_channel("debit-bad", {"kind": "bank", "currencies": ["CNY"]})
    assert (caught.value.status, caught.value.code, caught.value.param) == (400, "invalid_channel", "kind")
    with pytest.raises(SimulatorError) as caught:
        simulator.put_channel("debit-bad", {"kind": "wallet", "currencies": ["CNY"], "cutoff": "25:00"})
    assert caught.value.param == "cutoff"
    simulator.reset()
    assert "debit-bocom" not in [c["id"] for c in simulator.channels()]
