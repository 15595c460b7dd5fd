"""The issuer's one-time verification codes used when a cardholder binds a card or an account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulator.client import SimulatorClient, SimulatorError

BANK = "debit-icbc"


def start(sim: SimulatorClient, reference: str = "bind-1"):  # type: ignore[no-untyped-def]
    return sim.otp_start(channel=BANK, reference=reference, phone_hint="138****5678")


def refusal(call, *args, **kw) -> SimulatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulatorError) as caught:
        call(*args, **kw)
    return caught.value


def test_start_peek_verify(simulator: SimulatorClient) -> None:
    challenge = start(simulator)
    assert (challenge.state, challenge.attempts_left, challenge.code) == ("pending", 5, None)
    peeked = simulator.otp_peek("bind-1")
    assert peeked.code is not None
    assert len(peeked.code) == 6
    assert peeked.code.isdigit()
    verified = simulator.otp_verify(channel=BANK, reference="bind-1", code=peeked.code)
    assert (verified.state, verified.replayed) == ("verified", False)
    assert verified.verified_at is not None
    again = simulator.otp_verify(channel=BANK, reference="bind-1", code=peeked.code)
    assert (again.state, again.replayed) == ("verified", True)
    assert refusal(simulator.otp_verify, channel=BANK, reference="bind-1", code="000000").code == "otp_closed"
    assert refusal(start, simulator).code == "otp_closed"


def test_restart_while_pending_keeps_the_same_code(simulator: SimulatorClient) -> None:
    start(simulator)
    code = simulator.otp_peek("bind-1").code
    assert start(simulator).replayed is True
    assert simulator.otp_peek("bind-1").code == code
    other_phone = refusal(simulator.otp_start, channel=BANK, reference="bind-1", phone_hint="139****0000")
    assert (other_phone.status, other_phone.code) == (409, "idempotency_mismatch")


def test_wrong_codes_count_and_lock(simulator: SimulatorClient) -> None:
    start(simulator)
    code = simulator.otp_peek("bind-1").code
    wrong = "111111" if code != "111111" else "222222"
    for left in (4, 3, 2, 1):
        error = refusal(simulator.otp_verify, channel=BANK, reference="bind-1", code=wrong)
        assert (error.status, error.code, error.param, error.error["attempts_left"]) == (
            422,
            "otp_mismatch",
            "code",
            left,
        )
    locked = refusal(simulator.otp_verify, channel=BANK, reference="bind-1", code=wrong)
    assert (locked.code, locked.error["attempts_left"]) == ("otp_locked", 0)
    # Even the right code no longer works once locked.
    assert refusal(simulator.otp_verify, channel=BANK, reference="bind-1", code=code).code == "otp_locked"
    assert simulator.otp_peek("bind-1").state == "locked"
    outcomes = [(r["outcome"], r["code"]) for r in simulator.journal_all(op="otp_verify")]
    assert outcomes == [("refused", "otp_mismatch")] * 4 + [("refused", "otp_locked")] * 2


def test_codes_expire(simulator: SimulatorClient) -> None:
    start(simulator)
    code = simulator.otp_peek("bind-1").code
    simulator.set_clock((datetime.now(UTC) + timedelta(seconds=301)).isoformat())
    error = refusal(simulator.otp_verify, channel=BANK, reference="bind-1", code=code)
    assert (error.status, error.code) == (422, "otp_expired")
    assert simulator.otp_peek("bind-1").state == "expired"
    assert start(simulator, "bind-2").state == "pending"  # a new reference starts afresh


def test_otp_refusals(simulator: SimulatorClient) -> None:
    assert refusal(simulator.otp_verify, channel=BANK, reference="nobody", code="123456").code == "otp_not_found"
    assert refusal(simulator.otp_peek, "nobody").status == 404
    assert refusal(simulator.otp_start, channel=BANK, reference="b", phone_hint="").code == "invalid_phone_hint"
    assert refusal(simulator.otp_start, channel="nowhere", reference="b", phone_hint="1").code == "unknown_channel"
    start(simulator)
    assert refusal(simulator.otp_verify, channel="debit-cmb", reference="bind-1", code="1").code == "otp_not_found"
