"""Card and code payments over real HTTP: every operation's success and refusal, idempotent replays, reversal."""

from __future__ import annotations

import pytest

from simulator.client import SimulatorClient, SimulatorError

ACQ = "acq-unionpay-a"
CARD = {"kind": "card", "token": "tok_visa_1"}


def authorise(sim: SimulatorClient, reference: str = "pi-1", amount: int = 10000, **kw: object):  # type: ignore[no-untyped-def]
    args = {"channel": ACQ, "reference": reference, "amount": amount, "currency": "CNY", "instrument": CARD, **kw}
    return sim.authorise(**args)  # type: ignore[arg-type]


def refusal(call, *args, **kw) -> SimulatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulatorError) as caught:
        call(*args, **kw)
    return caught.value


def test_authorise_then_capture(simulator: SimulatorClient) -> None:
    payment = authorise(simulator)
    assert payment.state == "authorised"
    assert payment.id.startswith("pay_")
    assert (payment.amount, payment.currency, payment.captured_amount) == (10000, "CNY", 0)
    assert len(payment.auth_code) == 6
    assert payment.replayed is False

    captured = simulator.capture(channel=ACQ, reference="pi-1", amount=8000)
    assert (captured.id, captured.state, captured.captured_amount) == (payment.id, "captured", 8000)
    assert simulator.payment_status(channel=ACQ, reference="pi-1").state == "captured"


def test_sale_captures_at_once_and_code_payments(simulator: SimulatorClient) -> None:
    sale = simulator.authorise(
        channel=ACQ, reference="till-1", amount=2590, currency="CNY", instrument={"kind": "code", "code": "2860123"},
        capture=True,
    )  # fmt: skip
    assert (sale.state, sale.captured_amount, sale.instrument) == ("captured", 2590, {"kind": "code", "ref": "2860123"})


def test_jpy_amounts_are_whole_yen(simulator: SimulatorClient) -> None:
    payment = simulator.authorise(channel=ACQ, reference="jp-1", amount=1200, currency="JPY", instrument=CARD)
    assert (payment.amount, payment.currency, payment.state) == (1200, "JPY", "authorised")


def test_replayed_authorise_returns_the_original_and_charges_once(simulator: SimulatorClient) -> None:
    first = authorise(simulator, capture=True)
    again = authorise(simulator, capture=True)
    assert again.id == first.id
    assert again.replayed is True
    assert again.state == "captured"
    charges = simulator.journal_all(channel=ACQ, reference="pi-1")
    assert [(r["op"], r["outcome"], r["money"]) for r in charges] == [("sale", "ok", 10000), ("sale", "replayed", 0)]


def test_reused_reference_for_another_payment_is_refused(simulator: SimulatorClient) -> None:
    authorise(simulator)
    error = refusal(authorise, simulator, amount=10001)
    assert (error.status, error.code, error.param) == (409, "idempotency_mismatch", "reference")


@pytest.mark.parametrize(
    ("changes", "status", "code", "param"),
    [
        ({"amount": 0}, 400, "invalid_amount", "amount"),
        ({"amount": 10.5}, 400, "invalid_amount", "amount"),
        ({"amount": True}, 400, "invalid_amount", "amount"),
        ({"currency": "GBP"}, 400, "currency_not_supported", "currency"),
        ({"channel": "acq-nowhere"}, 404, "unknown_channel", "channel"),
        ({"reference": "has space"}, 400, "invalid_reference", "reference"),
        ({"instrument": {"kind": "account", "account_id": "a1"}}, 400, "instrument_not_supported", "instrument.kind"),
        ({"instrument": {"kind": "card"}}, 400, "invalid_instrument", "instrument.token"),
        ({"capture": "yes"}, 400, "invalid_capture", "capture"),
    ],
)
def test_bad_authorise_is_refused_and_records_nothing(
    simulator: SimulatorClient, changes: dict, status: int, code: str, param: str
) -> None:
    error = refusal(authorise, simulator, **changes)
    assert (error.status, error.code, error.param) == (status, code, param)
    assert error.error["type"] in ("invalid_request", "not_found")
    assert simulator.payment_status(channel=ACQ, reference="pi-1").state == "not_found"


def test_capture_refusals_and_replay(simulator: SimulatorClient) -> None:
    authorise(simulator, amount=5000)
    assert refusal(simulator.capture, channel=ACQ, reference="pi-1", amount=5001).code == "amount_exceeds_authorised"
    assert refusal(simulator.capture, channel=ACQ, reference="nope").code == "payment_not_found"
    first = simulator.capture(channel=ACQ, reference="pi-1")
    replay = simulator.capture(channel=ACQ, reference="pi-1")
    assert (replay.captured_amount, replay.replayed, first.replayed) == (5000, True, False)
    error = refusal(simulator.capture, channel=ACQ, reference="pi-1", amount=4000)
    assert (error.status, error.code) == (409, "already_captured")
    rows = [
        (r["reference"], r["outcome"], r["code"], r["money"]) for r in simulator.journal_all(channel=ACQ, op="capture")
    ]
    assert rows == [
        ("pi-1", "refused", "amount_exceeds_authorised", 0),
        ("nope", "refused", "payment_not_found", 0),
        ("pi-1", "ok", None, 5000),
        ("pi-1", "replayed", None, 0),
        ("pi-1", "refused", "already_captured", 0),
    ]


def test_void(simulator: SimulatorClient) -> None:
    authorise(simulator)
    voided = simulator.void(channel=ACQ, reference="pi-1")
    assert voided.state == "voided"
    assert simulator.void(channel=ACQ, reference="pi-1").replayed is True
    error = refusal(simulator.capture, channel=ACQ, reference="pi-1")
    assert (error.status, error.code) == (409, "invalid_state")
    authorise(simulator, reference="pi-2", capture=True)
    assert refusal(simulator.void, channel=ACQ, reference="pi-2").code == "invalid_state"


def test_partial_refunds_add_up_and_never_exceed_the_capture(simulator: SimulatorClient) -> None:
    authorise(simulator, amount=10000, capture=True)
    first = simulator.refund(channel=ACQ, reference="pi-1", refund_reference="r1", amount=3000)
    assert (first.state, first.payment_state, first.payment_refunded_amount) == (
        "succeeded",
        "partially_refunded",
        3000,
    )
    replay = simulator.refund(channel=ACQ, reference="pi-1", refund_reference="r1", amount=3000)
    assert (replay.id, replay.replayed) == (first.id, True)
    mismatch = refusal(simulator.refund, channel=ACQ, reference="pi-1", refund_reference="r1", amount=2000)
    assert (mismatch.status, mismatch.code) == (409, "idempotency_mismatch")
    too_much = refusal(simulator.refund, channel=ACQ, reference="pi-1", refund_reference="r2", amount=7001)
    assert (too_much.status, too_much.code, too_much.param) == (422, "refund_exceeds_captured", "amount")
    last = simulator.refund(channel=ACQ, reference="pi-1", refund_reference="r2", amount=7000)
    assert (last.payment_state, last.payment_refunded_amount) == ("refunded", 10000)
    status = simulator.payment_status(channel=ACQ, reference="pi-1")
    assert [r["amount"] for r in status.refunds] == [3000, 7000]
    assert refusal(simulator.refund, channel=ACQ, reference="pi-1", refund_reference="r3", amount=1).code == (
        "invalid_state"
    )


def test_refund_of_an_uncaptured_payment_is_refused(simulator: SimulatorClient) -> None:
    authorise(simulator)
    error = refusal(simulator.refund, channel=ACQ, reference="pi-1", refund_reference="r1", amount=100)
    assert (error.status, error.code) == (409, "invalid_state")


def test_reversal_of_an_authorisation(simulator: SimulatorClient) -> None:
    authorise(simulator)
    reversed_ = simulator.reverse(channel=ACQ, reference="pi-1")
    assert (reversed_.state, reversed_.reversed_amount) == ("reversed", 0)
    assert simulator.reverse(channel=ACQ, reference="pi-1").replayed is True
    assert simulator.payment_status(channel=ACQ, reference="pi-1").state == "reversed"
    assert refusal(simulator.capture, channel=ACQ, reference="pi-1").code == "invalid_state"


def test_reversal_of_a_capture_returns_what_was_not_refunded(simulator: SimulatorClient) -> None:
    authorise(simulator, amount=10000, capture=True)
    simulator.refund(channel=ACQ, reference="pi-1", refund_reference="r1", amount=2500)
    reversed_ = simulator.reverse(channel=ACQ, reference="pi-1")
    assert (reversed_.state, reversed_.reversed_amount) == ("reversed", 7500)
    money = [(r["op"], r["money"]) for r in simulator.journal_all(channel=ACQ, reference="pi-1") if r["money"]]
    assert money == [("sale", 10000), ("refund", -2500), ("reverse", -7500)]


def test_reversal_refusals(simulator: SimulatorClient) -> None:
    assert refusal(simulator.reverse, channel=ACQ, reference="unknown").code == "payment_not_found"
    authorise(simulator)
    simulator.void(channel=ACQ, reference="pi-1")
    error = refusal(simulator.reverse, channel=ACQ, reference="pi-1")
    assert (error.status, error.code) == (409, "invalid_state")


def test_status_of_an_unknown_reference(simulator: SimulatorClient) -> None:
    status = simulator.payment_status(channel=ACQ, reference="never-sent")
    assert (status.state, status.id) == ("not_found", None)


def test_references_with_every_allowed_character(simulator: SimulatorClient) -> None:
    reference = "Pi:2026.03_x-1"
    authorise(simulator, reference=reference)
    status = simulator.payment_status(channel=ACQ, reference=reference)
    assert (status.reference, status.state) == (reference, "authorised")


def test_references_are_per_channel(simulator: SimulatorClient) -> None:
    a = authorise(simulator)
    b = simulator.authorise(channel="acq-bank-b", reference="pi-1", amount=10000, currency="CNY", instrument=CARD)
    assert a.id != b.id


def test_capture_business_date_follows_the_channel_cutoff(simulator: SimulatorClient) -> None:
    simulator.set_clock("2026-03-02T22:30:00+08:00")  # acq-bank-b cuts off at 22:00, acq-unionpay-a at 23:00
    late = simulator.authorise(channel="acq-bank-b", reference="late", amount=100, currency="CNY", instrument=CARD)
    early = authorise(simulator, reference="early", amount=100)
    assert (late.business_date, early.business_date) == ("2026-03-03", "2026-03-02")
    simulator.set_clock("2026-03-03T09:00:00+08:00")
    captured = simulator.capture(channel=ACQ, reference="early")
    assert (captured.business_date, captured.captured_business_date) == ("2026-03-02", "2026-03-03")
