"""Disputes at the channel: opened by the admin endpoint (or the command line) on a payment the channel knows,
announced in the notice feed, answered once per reference, decided after the channel's delay or at once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulator.client import SimulatorClient, SimulatorError
from tests.simulator_fixtures import ROOT, SimulatorProcess

ACQ = "acq-unionpay-a"
FILE = {"name": "receipt.pdf", "content_type": "application/pdf", "size": 1234, "sha256": "ab" * 32}


def sale(sim: SimulatorClient, reference: str = "att_d1", amount: int = 20_000) -> None:
    sim.authorise(
        channel=ACQ,
        reference=reference,
        amount=amount,
        currency="CNY",
        instrument={"kind": "card", "token": "tok_1"},
        capture=True,
    )


def later(sim: SimulatorClient, seconds: float) -> None:
    sim.set_clock((datetime.now(UTC) + timedelta(seconds=seconds)).isoformat())


def refusal(call, *args, **kw) -> SimulatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(SimulatorError) as caught:
        call(*args, **kw)
    return caught.value


def notices(sim: SimulatorClient, **kw: Any) -> list[tuple[str, str, str]]:
    return [(n["type"], n["dispute"]["id"], n["dispute"]["state"]) for n in sim.dispute_notices(**kw)["data"]]


def test_a_chargeback_is_announced_answered_once_and_decided_after_the_delay(simulator: SimulatorClient) -> None:
    sale(simulator)
    opened = simulator.open_dispute(channel=ACQ, reference="att_d1", kind="chargeback", reason_code="4837")
    dispute_id = opened["id"]
    assert dispute_id.startswith("dsp_")
    assert (opened["amount"], opened["currency"], opened["state"], opened["planned_outcome"]) == (
        20_000, "CNY", "open", "won",
    )  # fmt: skip
    feed = simulator.dispute_notices(channel=ACQ)
    assert [(n["type"], n["dispute"]["reason_code"]) for n in feed["data"]] == [("opened", "4837")]
    assert feed["data"][0]["dispute"]["reference"] == "att_d1"

    answered = simulator.respond_dispute(dispute_id, reference="dp_1", text="delivered", files=[FILE])
    assert (answered["state"], answered["replayed"]) == ("answered", False)
    assert answered["response"]["files"] == [FILE]
    again = simulator.respond_dispute(dispute_id, reference="dp_1", text="delivered", files=[FILE])
    assert (again["state"], again["replayed"]) == ("answered", True)
    assert refusal(simulator.respond_dispute, dispute_id, reference="dp_1", text="other").code == (
        "idempotency_mismatch"
    )
    assert refusal(simulator.respond_dispute, dispute_id, reference="dp_2", text="delivered").code == (
        "already_answered"
    )
    assert simulator.dispute(dispute_id)["state"] == "answered"  # the default delay is 3 s

    later(simulator, 5)
    feed = simulator.dispute_notices(channel=ACQ, after=feed["next_after"])
    assert [(n["type"], n["dispute"]["state"], n["dispute"]["outcome"]) for n in feed["data"]] == [
        ("answered", "answered", None),
        ("decided", "won", "won"),
    ]
    assert simulator.dispute_notices(channel=ACQ, after=feed["next_after"])["data"] == []  # decided once
    assert refusal(simulator.respond_dispute, dispute_id, reference="dp_9", text="late").code == "already_answered"
    rows = simulator.journal_all(channel=ACQ)
    assert [(r["op"], r["outcome"], r["code"]) for r in rows if r["op"].startswith("dispute")] == [
        ("dispute_open", "ok", None),
        ("dispute_response", "ok", None),
        ("dispute_response", "replayed", None),
        ("dispute_response", "refused", "idempotency_mismatch"),
        ("dispute_response", "refused", "already_answered"),
        ("dispute_inquiry", "ok", None),
        ("dispute_response", "refused", "already_answered"),
    ]
    assert all(r["money"] == 0 for r in rows if r["op"].startswith("dispute"))


def test_the_decision_is_the_planned_one_and_the_delay_is_the_channels(simulator: SimulatorClient) -> None:
    simulator.set_faults(ACQ, dispute_decision_ms=0)
    sale(simulator)
    opened = simulator.open_dispute(
        channel=ACQ, reference="att_d1", kind="error_adjustment", amount=500, outcome="lost"
    )
    decided = simulator.respond_dispute(opened["id"], reference="dp_1", text="our books say otherwise")
    assert (decided["state"], decided["outcome"]) == ("lost", "lost")
    assert notices(simulator) == [
        ("opened", opened["id"], "open"), ("answered", opened["id"], "answered"), ("decided", opened["id"], "lost"),
    ]  # fmt: skip


def test_an_admin_decides_at_once_even_unanswered(simulator: SimulatorClient) -> None:
    sale(simulator)
    opened = simulator.open_dispute(channel=ACQ, reference="att_d1", kind="retrieval")
    lost = simulator.decide_dispute(opened["id"], "lost")
    assert (lost["state"], lost["replayed"]) == ("lost", False)
    assert simulator.decide_dispute(opened["id"], "lost")["replayed"] is True
    assert refusal(simulator.decide_dispute, opened["id"], "won").code == "invalid_state"
    assert refusal(simulator.respond_dispute, opened["id"], reference="dp_1", text="x").code == "invalid_state"
    assert [kind for kind, _, _ in notices(simulator)] == ["opened", "decided"]


def test_opening_is_refused_for_what_the_channel_cannot_dispute(simulator: SimulatorClient) -> None:
    sale(simulator, amount=10_000)
    simulator.refund(channel=ACQ, reference="att_d1", refund_reference="r1", amount=4_000)
    assert refusal(simulator.open_dispute, channel=ACQ, reference="nope", kind="chargeback").code == (
        "payment_not_found"
    )
    assert refusal(simulator.open_dispute, channel=ACQ, reference="att_d1", kind="fraud").code == "invalid_kind"
    first = simulator.open_dispute(channel=ACQ, reference="att_d1", kind="chargeback")
    assert first["amount"] == 6_000  # what is captured and not refunded
    refused = refusal(simulator.open_dispute, channel=ACQ, reference="att_d1", kind="chargeback", amount=1)
    assert (refused.status, refused.code) == (422, "dispute_exceeds_available")
    simulator.authorise(
        channel=ACQ, reference="att_auth", amount=1_000, currency="CNY", instrument={"kind": "card", "token": "t"}
    )
    assert refusal(simulator.open_dispute, channel=ACQ, reference="att_auth", kind="chargeback").code == (
        "invalid_state"
    )
    bad_files = refusal(simulator.respond_dispute, first["id"], reference="dp_1", files=[{"name": ""}])
    assert (bad_files.status, bad_files.code) == (400, "invalid_files")
    assert refusal(simulator.dispute, "dsp_nope").code == "dispute_not_found"
    assert [kind for kind, _, _ in notices(simulator)] == ["opened"]


def test_a_down_channel_takes_no_answer(simulator: SimulatorClient) -> None:
    sale(simulator)
    opened = simulator.open_dispute(channel=ACQ, reference="att_d1", kind="chargeback")
    simulator.set_faults(ACQ, down=True)
    assert refusal(simulator.respond_dispute, opened["id"], reference="dp_1", text="x").status == 503
    simulator.set_faults(ACQ, down=False)
    assert simulator.respond_dispute(opened["id"], reference="dp_1", text="x")["replayed"] is False


def test_the_feed_pages_and_filters_by_channel(simulator: SimulatorClient) -> None:
    for number in range(3):
        sale(simulator, reference=f"att_p{number}")
        simulator.open_dispute(channel=ACQ, reference=f"att_p{number}", kind="retrieval")
    first = simulator.dispute_notices(limit=2)
    assert (len(first["data"]), first["has_more"]) == (2, True)
    rest = simulator.dispute_notices(after=first["next_after"], limit=2)
    assert (len(rest["data"]), rest["has_more"]) == (1, False)
    assert simulator.dispute_notices(channel="acq-bank-b")["data"] == []
    assert refusal(simulator.dispute_notices, channel="nope").code == "unknown_channel"


def test_the_command_line_opens_and_decides_in_the_servers_database(
    simulator: SimulatorClient, simulator_server: SimulatorProcess
) -> None:
    sale(simulator)
    command = [sys.executable, "-m", "simulator", "dispute", "--db", str(simulator_server.db)]
    command += ["--config", str(simulator_server.config)]
    opened = subprocess.run(
        [*command, "open", "--channel", ACQ, "--reference", "att_d1", "--kind", "chargeback", "--amount", "700"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    dispute_id = json.loads(opened.stdout)["id"]
    subprocess.run([*command, "decide", dispute_id, "--outcome", "lost"], capture_output=True, check=True, cwd=ROOT)
    assert notices(simulator) == [("opened", dispute_id, "open"), ("decided", dispute_id, "lost")]
    refused = subprocess.run(
        [*command, "open", "--channel", ACQ, "--reference", "nope", "--kind", "chargeback"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert (refused.returncode, refused.stderr.strip()) == (
        2,
        "simulator: payment_not_found: no payment 'nope' on acq-unionpay-a",
    )


# --- the statement ----------------------------------------------------------------------------------------------------


def business_day(sim: SimulatorClient) -> str:
    return str(sim.payment_status(channel=ACQ, reference="att_s1").business_date)


def test_the_statement_lists_disputes_opened_and_decided_that_day(simulator: SimulatorClient) -> None:
    sale(simulator, "att_s1", 20_000)
    sale(simulator, "att_s2", 30_000)
    sale(simulator, "att_s3", 10_000)
    lost = simulator.open_dispute(channel=ACQ, reference="att_s1", kind="chargeback", amount=5_000, outcome="lost")
    simulator.decide_dispute(lost["id"], "lost")
    won = simulator.open_dispute(channel=ACQ, reference="att_s2", kind="retrieval")
    simulator.set_faults(ACQ, dispute_decision_ms=0)
    simulator.respond_dispute(won["id"], reference="dp_s2", text="signed for")  # decided won at once
    adjusted = simulator.open_dispute(channel=ACQ, reference="att_s3", kind="error_adjustment", amount=300)
    day = business_day(simulator)

    lines = simulator.statement(channel=ACQ, date=day).split("\n")
    details = [line.split(",") for line in lines if line.startswith("D,")]
    disputes = [(d[5], d[6], d[7], d[10], d[13]) for d in details if d[5] not in ("capture",)]
    assert disputes == [
        ("chargeback", lost["id"], "att_s1", "5000", "opened"),
        ("chargeback", lost["id"], "att_s1", "-5000", "lost"),  # the debit
        ("retrieval", won["id"], "att_s2", "30000", "opened"),
        ("retrieval", won["id"], "att_s2", "30000", "won"),
        ("error_adjustment", adjusted["id"], "att_s3", "300", "opened"),
    ]
    # The totals add up the captures and the lost chargeback's debit only.
    fees = sum(int(d[11]) for d in details)
    assert [line for line in lines if line.startswith("T,")] == [
        f"T,4,,{day},{ACQ},total,,,,CNY,55000,{fees},{55_000 - fees},"
    ]

    v2 = simulator.statement(channel=ACQ, date=day, format="csv_v2").split("\r\n")
    assert [line.split(";")[5:] for line in v2 if "拒付" in line] == [
        ["拒付", "CNY", "50.00", "0.00", "受理"],
        ["拒付", "CNY", "-50.00", "0.00", "败诉"],
    ]
    fixed = simulator.statement(channel=ACQ, date=day, format="fixed_v1").split("\n")
    assert [(line[25:27], line[130]) for line in fixed if line[25:27] in ("CB", "RR", "EA")] == [
        ("CB", "O"), ("CB", "L"), ("RR", "O"), ("RR", "W"), ("EA", "O"),
    ]  # fmt: skip
    assert fixed[-2][:29] == f"T0000000008+{55_000:017d}"

    # A discrepancy names a dispute row by the channel's dispute id; the payment's reference leaves it alone.
    simulator.set_statement_faults(channel=ACQ, date=day, missing=[adjusted["id"]], status=[lost["id"]])
    faulted = [line.split(",") for line in simulator.statement(channel=ACQ, date=day).split("\n")]
    assert [(d[5], d[10], d[13]) for d in faulted if d[0] == "D" and d[5] != "capture"] == [
        ("chargeback", "5000", "opened"),
        ("chargeback", "5000", "won"),  # its status flipped, and with it the sign
        ("retrieval", "30000", "opened"),
        ("retrieval", "30000", "won"),
    ]


def test_a_decision_is_listed_on_the_business_date_it_was_made(simulator: SimulatorClient) -> None:
    sale(simulator, "att_s1", 20_000)
    opened = simulator.open_dispute(channel=ACQ, reference="att_s1", kind="chargeback", outcome="lost")
    day = business_day(simulator)
    simulator.respond_dispute(opened["id"], reference="dp_s1", text="delivered")
    later(simulator, 26 * 3600)  # the decision (3 s after the answer) fell due; asked about a day later
    assert [line.split(",")[13] for line in simulator.statement(channel=ACQ, date=day).split("\n")
            if ",chargeback," in line] == ["opened", "lost"]  # fmt: skip
    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    assert ",chargeback," not in simulator.statement(channel=ACQ, date=next_day)
