"""Payouts over real HTTP: accepted once per reference, paid or returned after the channel's delay, faults injected
by reference, by the beneficiary account and by the channel's profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulator.client import SimulatorClient, SimulatorError, SimulatorTimeout

ACQ = "acq-bank-b"
ACCOUNT = {"last4": "4455", "name": "福州示例餐饮有限公司"}


def payout(sim: SimulatorClient, reference: str = "stl_1-p1", amount: int = 123_456, **kw: Any):  # type: ignore[no-untyped-def]
    args = {"channel": ACQ, "reference": reference, "amount": amount, "currency": "CNY", "account": ACCOUNT, **kw}
    return sim.payout(**args)


def later(sim: SimulatorClient, seconds: float) -> None:
    """Moves the simulator's clock `seconds` ahead of real time."""
    sim.set_clock((datetime.now(UTC) + timedelta(seconds=seconds)).isoformat())


def refusal(call, *args, **kw) -> SimulatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulatorError) as caught:
        call(*args, **kw)
    return caught.value


def test_accepted_then_paid_once_its_delay_has_passed(simulator: SimulatorClient) -> None:
    accepted = payout(simulator)
    assert str(accepted.id).startswith("po_")
    assert (accepted.state, accepted.amount, accepted.currency) == ("accepted", 123_456, "CNY")
    assert accepted.replayed is False
    assert accepted.account == {"last4": "4455", "token": "", "name": "福州示例餐饮有限公司"}
    assert simulator.payout_status("stl_1-p1").state == "accepted"  # the default delay is 3 s

    later(simulator, 5)
    paid = simulator.payout_status("stl_1-p1")
    assert (paid.id, paid.state, paid.return_reason) == (accepted.id, "paid", None)
    assert paid.finished_at == accepted.due_at  # it took effect when due, whenever it is looked at
    rows = simulator.journal_all(channel=ACQ)
    assert [(r["op"], r["outcome"], r["amount"], r["money"]) for r in rows] == [
        ("payout", "ok", 123_456, 0),
        ("payout_inquiry", "ok", 123_456, 0),
        ("payout_inquiry", "ok", 123_456, 0),
    ]


def test_the_same_reference_again_is_the_same_payout(simulator: SimulatorClient) -> None:
    first = payout(simulator)
    again = payout(simulator)
    assert (again.id, again.state, again.replayed) == (first.id, "accepted", True)
    later(simulator, 5)
    after_result = payout(simulator)  # a replay after the result answers the result, and pays nothing more
    assert (after_result.id, after_result.state, after_result.replayed) == (first.id, "paid", True)
    rows = simulator.journal_all(channel=ACQ, op="payout")
    assert [r["outcome"] for r in rows] == ["ok", "replayed", "replayed"]

    error = refusal(payout, simulator, amount=123_457)
    assert (error.status, error.code, error.param) == (409, "idempotency_mismatch", "reference")
    error = refusal(payout, simulator, account={"last4": "4455", "name": "Another Co."})
    assert (error.status, error.code) == (409, "idempotency_mismatch")


@pytest.mark.parametrize(
    ("last4", "reason"), [("9951", "account_closed"), ("9952", "name_mismatch"), ("9953", "account_frozen")]
)
def test_a_trigger_account_is_returned_with_its_reason(simulator: SimulatorClient, last4: str, reason: str) -> None:
    simulator.set_faults(ACQ, payout_delay_ms=0)
    returned = payout(simulator, account={"last4": last4, "token": "acct-tok-1"})
    assert (returned.state, returned.return_reason) == ("returned", reason)
    [row] = simulator.journal_all(channel=ACQ, op="payout")
    assert (row["outcome"], row["http_status"]) == ("ok", 200)  # accepted: the return comes from the beneficiary bank


def test_the_profile_returns_payouts_at_its_rate_with_its_reason(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, payout_return_rate=1.0, payout_return_reason="name_mismatch", payout_delay_ms=0)
    assert (payout(simulator).state, payout(simulator).return_reason) == ("returned", "name_mismatch")
    simulator.set_faults(ACQ, payout_return_rate=0.0)
    assert payout(simulator, reference="stl_1-p2").state == "paid"
    assert refusal(simulator.set_faults, ACQ, payout_return_reason="lost").code == "invalid_faults"


@pytest.mark.parametrize(
    ("reference", "status", "state_after"),
    [
        ("fault-error-p1", 500, "not_found"),
        ("fault-timeout-p1", 504, "not_found"),
        ("fault-charged-timeout-p1", 504, "accepted"),
    ],
)
def test_reference_triggers(simulator: SimulatorClient, reference: str, status: int, state_after: str) -> None:
    with pytest.raises(SimulatorError) as caught:
        payout(simulator, reference=reference)
    assert caught.value.status == status
    assert isinstance(caught.value, SimulatorTimeout) is (status == 504)
    assert simulator.payout_status(reference).state == state_after


def test_accepted_then_timed_out_is_found_by_inquiry_and_paid_once(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, charged_timeout_rate=1.0, payout_delay_ms=0)
    with pytest.raises(SimulatorTimeout):
        payout(simulator, timeout=0.1)  # the caller gives up before the answer
    assert simulator.payout_status("stl_1-p1").state == "paid"
    simulator.set_faults(ACQ, charged_timeout_rate=0.0)
    retried = payout(simulator)
    assert (retried.state, retried.replayed) == ("paid", True)
    rows = simulator.journal_all(channel=ACQ, op="payout")
    assert [r["outcome"] for r in rows] == ["accepted_timeout", "replayed"]


def test_return_triggers_by_reference(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, payout_delay_ms=0)
    assert payout(simulator, reference="fault-return-closed-1").return_reason == "account_closed"
    assert payout(simulator, reference="fault-return-name-1").return_reason == "name_mismatch"


@pytest.mark.parametrize(
    ("changes", "code", "param"),
    [
        ({"account": {"last4": "4455", "number": "6222020000112233445"}}, "invalid_account", "account.number"),
        ({"account": {"last4": "445", "name": "X"}}, "invalid_account", "account.last4"),
        ({"account": {"last4": "4455"}}, "invalid_account", "account"),
        ({"account": {"last4": "4455", "token": "has space"}}, "invalid_account", "account.token"),
        ({"account": None}, "parameter_missing", "account"),
        ({"currency": "USD"}, "currency_not_supported", "currency"),
        ({"amount": 0}, "invalid_amount", "amount"),
        ({"reference": "has space"}, "invalid_reference", "reference"),
    ],
)
def test_bad_payouts_are_refused_and_store_nothing(
    simulator: SimulatorClient, changes: dict[str, Any], code: str, param: str
) -> None:
    body = {"channel": ACQ, "reference": "stl_1-p1", "amount": 100, "currency": "CNY", "account": ACCOUNT, **changes}
    error = refusal(simulator.request, "POST", "/v1/payouts", {k: v for k, v in body.items() if v is not None})
    assert (error.status, error.code, error.param) == (400, code, param)
    assert simulator.payout_status("stl_1-p1").state == "not_found"
    assert simulator.journal_all(channel=ACQ) == []


def test_unknown_reference_is_not_found(simulator: SimulatorClient) -> None:
    status = simulator.payout_status("stl_nothing-p1")
    assert (status.id, status.state) == (None, "not_found")


def test_a_down_channel_accepts_nothing(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, down=True)
    assert refusal(payout, simulator).status == 503
    simulator.set_faults(ACQ, down=False)
    assert simulator.payout_status("stl_1-p1").state == "not_found"


def test_payouts_are_listed_outside_the_acquiring_totals_and_reset_forgets_them(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, payout_delay_ms=0)
    made = payout(simulator)
    day = str(made.business_date)
    lines = simulator.statement(channel=ACQ, date=day).split("\r\n")  # acq-bank-b writes the bank layout (csv_v2)
    assert lines[1].split(";")[2:] == ["stl_1-p1", str(made.id), "", "代付", "CNY", "1234.56", "0.00", "成功"]
    assert lines[2:] == [""]
    v1 = simulator.statement(channel=ACQ, date=day, format="csv_v1").splitlines()
    assert [line.split(",")[5:8] + line.split(",")[10:] for line in v1[1:]] == [
        ["payout", str(made.id), "stl_1-p1", "123456", "0", "123456", "success"]
    ]  # and no total row: the totals are the acquiring movements'
    simulator.reset()
    assert simulator.payout_status("stl_1-p1").state == "not_found"
