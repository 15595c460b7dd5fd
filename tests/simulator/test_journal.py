"""The journal (every call, written at call time), the daily statement CSV, and completeness under concurrency."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading
from collections import Counter

import pytest

from simulator.client import SimulatorClient, SimulatorError, SimulatorTimeout
from tests.simulator_fixtures import ROOT, SimulatorProcess

ACQ = "acq-unionpay-a"
CARD = {"kind": "card", "token": "tok_1"}


def sale(sim: SimulatorClient, reference: str, amount: int, currency: str = "CNY", capture: bool = True):  # type: ignore[no-untyped-def]
    return sim.authorise(
        channel=ACQ, reference=reference, amount=amount, currency=currency, instrument=CARD, capture=capture
    )


def test_journal_pages_and_filters(simulator: SimulatorClient) -> None:
    for n in range(5):
        sale(simulator, f"j-{n}", 100 + n, capture=False)
    simulator.payment_status(channel="acq-bank-b", reference="elsewhere")
    first = simulator.journal(channel=ACQ, limit=2)
    assert [r["reference"] for r in first.data] == ["j-0", "j-1"]
    assert first.has_more is True
    second = simulator.journal(channel=ACQ, limit=2, after=first.next_after)
    last = simulator.journal(channel=ACQ, limit=2, after=second.next_after)
    assert [r["reference"] for r in second.data + last.data] == ["j-2", "j-3", "j-4"]
    assert last.has_more is False
    row = first.data[0]
    assert {k: row[k] for k in ("channel", "op", "amount", "currency", "outcome", "http_status", "money")} == {
        "channel": ACQ, "op": "authorise", "amount": 100, "currency": "CNY", "outcome": "ok", "http_status": 200,
        "money": 0,
    }  # fmt: skip
    assert row["object_id"].startswith("pay_")
    [inquiry] = simulator.journal_all(channel="acq-bank-b")
    assert inquiry["op"] == "inquiry"
    # Each channel has its own cut-off, so late in the day the two rows may fall on different business dates.
    today, elsewhere = row["business_date"], inquiry["business_date"]
    assert len(simulator.journal_all(date=today, channel=ACQ)) == 5
    assert len(simulator.journal_all(date=elsewhere)) == (6 if elsewhere == today else 1)
    assert simulator.journal_all(date="2001-01-01") == []
    with pytest.raises(SimulatorError) as caught:
        simulator.journal(limit=0)
    assert (caught.value.status, caught.value.param) == (400, "limit")
    with pytest.raises(SimulatorError) as caught:
        simulator.journal(limit="²")  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.param) == (400, "limit")
    with pytest.raises(SimulatorError) as caught:
        simulator.journal(date="March")
    assert caught.value.code == "invalid_date"


def test_request_ids_are_recorded(simulator: SimulatorClient) -> None:
    simulator.authorise(channel=ACQ, reference="r", amount=100, currency="CNY", instrument=CARD, request_id="req-77")
    [row] = simulator.journal_all(reference="r")
    assert row["request_id"] == "req-77"


def _statement_day(simulator: SimulatorClient) -> None:
    simulator.set_clock("2026-03-02T10:00:00+08:00")
    sale(simulator, "s-1", 10000)  # fee 38
    sale(simulator, "s-2", 5000, capture=False)
    simulator.capture(channel=ACQ, reference="s-2", amount=4000)  # fee 15.2 → 15
    simulator.refund(channel=ACQ, reference="s-1", refund_reference="s-1-r1", amount=2500)
    sale(simulator, "s-3", 3000)  # fee 11.4 → 11
    simulator.reverse(channel=ACQ, reference="s-3")
    sale(simulator, "s-4", 2051)  # declined: not on the statement
    with pytest.raises(SimulatorTimeout):
        sale(simulator, "s-5", 1055)  # charged then timed out: on the statement
    sale(simulator, "s-6", 1200, currency="JPY")  # fee 4.56 → 5
    sale(simulator, "s-7", 999, capture=False)  # authorised only: no money moved
    simulator.authorise(
        channel="acq-bank-b", reference="other", amount=100, currency="CNY", instrument=CARD, capture=True
    )
    simulator.set_clock("2026-03-02T23:30:00+08:00")  # after the 23:00 cut-off: the next business date
    sale(simulator, "s-8", 700)


EXPECTED_DETAIL = [
    ("capture", "s-1", "", "CNY", "10000", "38", "9962"),
    ("capture", "s-2", "", "CNY", "4000", "15", "3985"),
    ("refund", "s-1", "s-1-r1", "CNY", "-2500", "0", "-2500"),
    ("capture", "s-3", "", "CNY", "3000", "11", "2989"),
    ("reversal", "s-3", "", "CNY", "-3000", "0", "-3000"),
    ("capture", "s-5", "", "CNY", "1055", "4", "1051"),
    ("capture", "s-6", "", "JPY", "1200", "5", "1195"),
]


def test_statement_csv_for_a_day(simulator: SimulatorClient) -> None:
    _statement_day(simulator)
    text = simulator.statement(channel=ACQ, date="2026-03-02")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == (
        "record,seq,txn_time,business_date,channel,type,txn_id,reference,operation_reference,currency,amount_minor,"
        "fee_minor,net_minor,status"
    )
    details = [r for r in rows if r["record"] == "D"]
    assert [
        (
            r["type"],
            r["reference"],
            r["operation_reference"],
            r["currency"],
            r["amount_minor"],
            r["fee_minor"],
            r["net_minor"],
        )
        for r in details
    ] == EXPECTED_DETAIL
    assert all(r["business_date"] == "2026-03-02" and r["channel"] == ACQ for r in details)
    assert {r["status"] for r in details} == {"success"}
    assert {r["status"] for r in rows if r["record"] == "T"} == {""}
    assert all(r["txn_time"].startswith("2026-03-02T10:0") and r["txn_time"].endswith("+08:00") for r in details)
    assert details[2]["txn_id"].startswith("re_")
    assert details[0]["txn_id"].startswith("pay_")
    assert [int(r["seq"]) for r in details] == sorted(int(r["seq"]) for r in details)
    totals = [
        (r["seq"], r["currency"], r["amount_minor"], r["fee_minor"], r["net_minor"]) for r in rows if r["record"] == "T"
    ]
    assert totals == [("6", "CNY", "12555", "68", "12487"), ("1", "JPY", "1200", "5", "1195")]
    next_day = list(csv.DictReader(io.StringIO(simulator.statement(channel=ACQ, date="2026-03-03"))))
    assert [(r["record"], r["reference"], r["amount_minor"]) for r in next_day] == [
        ("D", "s-8", "700"),
        ("T", "", "700"),
    ]
    empty = simulator.statement(channel="wallet-x", date="2026-03-02")
    assert empty.count("\n") == 1


def test_statement_refusals(simulator: SimulatorClient) -> None:
    with pytest.raises(SimulatorError) as caught:
        simulator.statement(channel=ACQ, date="2026-13-01")
    assert (caught.value.status, caught.value.code) == (400, "invalid_date")
    with pytest.raises(SimulatorError) as caught:
        simulator.statement(channel="nowhere", date="2026-03-01")
    assert caught.value.status == 404


def test_statement_cli_writes_the_same_file(
    simulator: SimulatorClient, simulator_server: SimulatorProcess, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _statement_day(simulator)
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "statement", "--db", str(simulator_server.db), "--config",
         str(simulator_server.config), "--date", "2026-03-02", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 9
    assert f"{ACQ}_20260302.csv" in written
    assert (tmp_path / f"{ACQ}_20260302.csv").read_text() == simulator.statement(channel=ACQ, date="2026-03-02")
    assert str(tmp_path / f"{ACQ}_20260302.csv") in done.stdout


def test_journal_is_complete_under_8_concurrent_clients(
    simulator: SimulatorClient, simulator_server: SimulatorProcess
) -> None:
    """8 clients x 250 calls with random faults: every call is in the journal exactly once, no reference is charged
    twice, and the money the journal shows is exactly what the clients ended up believing was captured."""
    for channel in (ACQ, "wallet-x"):
        simulator.set_faults(
            channel, decline_rate=0.05, error_rate=0.05, timeout_rate=0.03, charged_timeout_rate=0.03, hang_ms=5, seed=7
        )
    for n in range(8):
        simulator.open_account(channel="wallet-x", account_id=f"soak-{n}", currency="CNY", balance=10**9)
    sent: list[str] = []
    captured: dict[str, int] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client_run(n: int) -> None:
        mine: list[str] = []
        believed: dict[str, int] = {}
        try:
            with simulator_server.client() as client:
                for i in range(250):
                    rid = f"c{n}-{i}"
                    mine.append(rid)
                    k = i - 1 if i % 10 == 9 else i  # every tenth call retries the previous reference
                    reference, amount = f"c{n}-p{k}", 1000 + k
                    if amount % 100 in range(51, 57):
                        amount += 10  # stay clear of the deterministic triggers: the dice decide here
                    channel = "wallet-x" if k % 2 else ACQ
                    instrument = {"kind": "account", "account_id": f"soak-{n}"} if k % 2 else CARD
                    try:
                        payment = client.authorise(
                            channel=channel, reference=reference, amount=amount, currency="CNY",
                            instrument=instrument, capture=True, request_id=rid,
                        )  # fmt: skip
                        if payment.state == "captured":
                            believed[f"{channel}/{reference}"] = payment.captured_amount
                    except SimulatorTimeout:
                        pass
                    except SimulatorError as exc:
                        if exc.code != "channel_error":
                            raise
                # Resolve the unknown outcomes by inquiry, as a connector would (not journaled under our ids).
                for i in range(250):
                    channel = "wallet-x" if i % 2 else ACQ
                    key = f"{channel}/c{n}-p{i}"
                    if key not in believed:
                        status = client.payment_status(channel=channel, reference=f"c{n}-p{i}")
                        if status.state == "captured":
                            believed[key] = status.captured_amount
        except BaseException as exc:
            errors.append(exc)
        with lock:
            sent.extend(mine)
            captured.update(believed)

    threads = [threading.Thread(target=client_run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = simulator.journal_all()
    by_request = Counter(r["request_id"] for r in rows if r["request_id"])
    assert len(sent) == 2000
    assert by_request == Counter(sent)  # every call once, none lost, none invented
    outcomes = Counter(r["outcome"] for r in rows if r["request_id"])
    assert {"ok", "replayed", "declined", "error", "timeout", "charged_timeout"} <= set(outcomes)
    charged: dict[str, list[int]] = {}
    for r in rows:
        if r["money"]:
            charged.setdefault(f"{r['channel']}/{r['reference']}", []).append(r["money"])
    assert all(len(amounts) == 1 for amounts in charged.values())  # zero double charges
    assert {k: v[0] for k, v in charged.items()} == captured
    spent = sum(v for k, v in captured.items() if k.startswith("wallet-x/"))
    balances = sum(simulator.account(f"soak-{n}").balance for n in range(8))
    assert balances == 8 * 10**9 - spent
