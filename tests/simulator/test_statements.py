"""Statements in three layouts (csv_v1, csv_v2, fixed_v1), payouts on them, and injected discrepancies: every file is
parsed back here by the published layout, not by the simulator's own code."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from simulator.client import SimulatorClient, SimulatorError, SimulatorTimeout
from simulator.config import DEFAULT_CONFIG, load_channels
from simulator.statement import Row, StatementFaults, apply_faults, render
from tests.simulator_fixtures import ROOT, SimulatorProcess

FORMATS = ("csv_v1", "csv_v2", "fixed_v1")
ACQ = "acq-unionpay-a"
CARD = {"kind": "card", "token": "tok_1"}
DAY = "2026-03-02"
V2_TYPES = {"消费": "capture", "退货": "refund", "撤销": "reversal", "代付": "payout"}
V2_STATUS = {"成功": "success", "失败": "failed", "退回": "returned"}
FIXED_TYPES = {"01": "capture", "02": "refund", "03": "reversal", "04": "payout"}
FIXED_STATUS = {"S": "success", "F": "failed", "R": "returned"}
DECIMALS = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "JPY": 0}


def _minor(text: str, currency: str) -> int:
    sign = -1 if text.startswith("-") else 1
    units, _, fraction = text.lstrip("-").partition(".")
    assert len(fraction) == DECIMALS[currency]
    return sign * (int(units) * 10 ** DECIMALS[currency] + int(fraction or 0))


def parse(fmt: str, text: str) -> dict[str, Any]:
    """`{"rows": [...], "totals": ...}`: each row as {type, txn_id, ours, original, currency, amount, fee, status,
    time} (ours: the reference we sent; time: local `YYYYMMDDHHMMSS`), read by the layout in docs/simulator.md."""
    rows: list[dict[str, Any]] = []
    if fmt == "csv_v1":
        assert "\r" not in text
        assert text.endswith("\n")
        totals = []
        for line in csv.DictReader(io.StringIO(text)):
            if line["record"] == "T":
                totals.append((line["currency"], int(line["seq"]), int(line["amount_minor"]), int(line["fee_minor"])))
                assert line["status"] == ""
                continue
            assert int(line["net_minor"]) == int(line["amount_minor"]) - int(line["fee_minor"])
            moment = datetime.fromisoformat(line["txn_time"])
            assert moment.utcoffset() == timedelta(hours=8)
            ours = line["operation_reference"] if line["type"] == "refund" else line["reference"]
            rows.append(
                {"type": line["type"], "txn_id": line["txn_id"], "ours": ours, "currency": line["currency"],
                 "amount": int(line["amount_minor"]), "fee": int(line["fee_minor"]), "status": line["status"],
                 "time": moment.strftime("%Y%m%d%H%M%S"), "seq": int(line["seq"])}
            )  # fmt: skip
        return {"rows": rows, "totals": totals}
    if fmt == "csv_v2":
        assert text.startswith("\ufeff")
        assert text.endswith("\r\n")
        lines = text[1:].split("\r\n")
        assert lines[0] == "交易日期;交易时间;商户订单号;渠道流水号;原交易流水号;交易类型;币种;交易金额;手续费;状态"
        assert lines[-1] == ""
        for line in lines[1:-1]:
            day, clock, ours, txn_id, original, kind, currency, amount, fee, status = line.split(";")
            rows.append(
                {"type": V2_TYPES[kind], "txn_id": txn_id, "ours": ours, "original": original, "currency": currency,
                 "amount": _minor(amount, currency), "fee": _minor(fee, currency), "status": V2_STATUS[status],
                 "time": clock, "day": day}
            )  # fmt: skip
        return {"rows": rows, "totals": None}
    assert fmt == "fixed_v1"
    text.encode("ascii")
    assert "\r" not in text
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert all(len(line) == 160 for line in lines)

    def col(line: str, first: int, last: int) -> str:  # 1-based, inclusive, as the layout table says
        return line[first - 1 : last]

    header, details, trailer = lines[0], lines[1:-1], lines[-1]
    assert col(header, 1, 1) == "H"
    assert col(header, 30, 160).strip() == ""
    for line in details:
        assert col(line, 1, 1) == "D"
        assert col(line, 132, 160).strip() == ""
        currency = col(line, 100, 102)
        sign = {"+": 1, "-": -1}[col(line, 103, 103)]
        rows.append(
            {"type": FIXED_TYPES[col(line, 26, 27)], "txn_id": col(line, 28, 59).rstrip(),
             "ours": col(line, 60, 99).rstrip(), "currency": currency, "amount": sign * int(col(line, 104, 118)),
             "fee": int(col(line, 119, 130)), "status": FIXED_STATUS[col(line, 131, 131)],
             "time": col(line, 12, 25), "seq": int(col(line, 2, 11))}
        )  # fmt: skip
    assert col(trailer, 1, 1) == "T"
    assert col(trailer, 30, 160).strip() == ""
    return {
        "rows": rows,
        "header": (col(header, 2, 21).rstrip(), col(header, 22, 29)),
        "totals": (int(col(trailer, 2, 11)), {"+": 1, "-": -1}[col(trailer, 12, 12)] * int(col(trailer, 13, 29))),
    }


def essentials(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["type"], r["txn_id"], r["ours"], r["currency"], r["amount"], r["fee"], r["status"]) for r in rows]


# ---- the writers, without a server ---------------------------------------------------------------------------------

AT = datetime(2026, 3, 2, 2, 0, 5, 123456, tzinfo=UTC)  # 10:00:05 in Shanghai
KNOWN = [
    Row(1, AT, "capture", "pay_aaa", "pi-1", "", "", "CNY", 12800, 49),
    Row(2, AT + timedelta(seconds=1), "refund", "re_bbb", "pi-1", "pi-1-r1", "pay_aaa", "CNY", -2500, 0),
    Row(3, AT + timedelta(seconds=2), "capture", "pay_ccc", "pi-2", "", "", "JPY", 1200, 5),
    Row(4, AT + timedelta(seconds=3), "reversal", "pay_ccc", "pi-2", "", "pay_ccc", "JPY", -1200, 0),
    Row(5, AT + timedelta(seconds=4), "payout", "po_ddd", "stl-1-p1", "", "", "CNY", 1284550, 0),
    Row(6, AT + timedelta(seconds=5), "payout", "po_eee", "stl-2-p1", "", "", "CNY", 700, 0, "returned"),
    Row(7, AT + timedelta(hours=14), "capture", "pay_fff", "pi-3", "", "", "CNY", 5, 0, "failed"),  # 00:00:05 next day
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_layout_round_trips_known_rows(fmt: str) -> None:
    parsed = parse(fmt, render(fmt, ACQ, date(2026, 3, 2), KNOWN))
    expected = [(r.type, r.txn_id, r.our_reference, r.currency, r.amount, r.fee, r.status) for r in KNOWN]
    assert essentials(parsed["rows"]) == expected
    times = ["20260302100005", "20260302100006", "20260302100007", "20260302100008", "20260302100009",
             "20260302100010", "20260303000005"]  # fmt: skip
    # csv_v2 gives the time of day only, next to the business date.
    assert [r["time"] for r in parsed["rows"]] == ([t[8:] for t in times] if fmt == "csv_v2" else times)
    if fmt == "csv_v1":
        # Totals per currency over the acquiring rows only (the payouts are listed, not totalled).
        assert parsed["totals"] == [("CNY", 3, 12800 - 2500 + 5, 49), ("JPY", 2, 0, 5)]
        assert [r["seq"] for r in parsed["rows"]] == [1, 2, 3, 4, 5, 6, 7]
    elif fmt == "csv_v2":
        assert [r["original"] for r in parsed["rows"]] == ["", "pay_aaa", "", "pay_ccc", "", "", ""]
        assert {r["day"] for r in parsed["rows"]} == {"20260302"}  # the business date, whatever the clock says
    else:
        assert parsed["header"] == (ACQ, "20260302")
        assert parsed["totals"] == (7, sum(r.amount for r in KNOWN))


def test_empty_days_and_the_exact_bytes_of_each_layout() -> None:
    day = date(2026, 3, 2)
    assert render("csv_v1", ACQ, day, []) == (
        "record,seq,txn_time,business_date,channel,type,txn_id,reference,operation_reference,currency,amount_minor,"
        "fee_minor,net_minor,status\n"
    )
    assert render("csv_v2", ACQ, day, []).encode("utf-8")[:3] == b"\xef\xbb\xbf"
    assert (
        render("csv_v2", ACQ, day, KNOWN[1:2]).split("\r\n")[1]
        == "20260302;100006;pi-1-r1;re_bbb;pay_aaa;退货;CNY;-25.00;0.00;成功"
    )
    assert (
        render("csv_v2", ACQ, day, KNOWN[2:3]).split("\r\n")[1] == "20260302;100007;pi-2;pay_ccc;;消费;JPY;1200;5;成功"
    )
    fixed = render("fixed_v1", ACQ, day, KNOWN[1:2]).split("\n")
    assert fixed[1].rstrip() == (
        "D00000000022026030210000602" + "re_bbb".ljust(32) + "pi-1-r1".ljust(40) + "CNY-000000000002500000000000000S"
    )
    assert fixed[2].rstrip() == "T0000000001-00000000000002500"
    with pytest.raises(ValueError, match="unknown statement format"):
        render("xml", ACQ, day, [])


# ---- discrepancies, without a server -------------------------------------------------------------------------------

CHANNEL = load_channels(DEFAULT_CONFIG)[ACQ]


def test_faults_by_reference_touch_exactly_the_rows_named() -> None:
    faults = StatementFaults(
        channel=ACQ, date=DAY, missing=["pi-1"], amount=["pi-1-r1", "pi-2"], status=["stl-1-p1", "stl-2-p1"],
        duplicate=["pi-3"], extra=2, seed=5,
    )  # fmt: skip
    rows, applied = apply_faults(KNOWN, faults, CHANNEL, date(2026, 3, 2))
    assert applied["missing"] == ["pi-1"]
    assert applied["amount"] == ["pi-1-r1", "pi-2", "pi-2"]  # a capture and its reversal share the reference
    by_ref = {(r.our_reference, r.type): r for r in rows}
    assert ("pi-1", "capture") not in by_ref
    refund = by_ref[("pi-1-r1", "refund")]
    assert -2500 - 99 <= refund.amount <= -2501
    assert 1201 <= by_ref[("pi-2", "capture")].amount <= 1299
    assert -1299 <= by_ref[("pi-2", "reversal")].amount <= -1201
    assert by_ref[("stl-1-p1", "payout")].status == "returned"  # a paid payout, said to be returned
    assert by_ref[("stl-2-p1", "payout")].status == "success"  # and a returned one, said to be paid
    assert [r.txn_id for r in rows].count("pay_fff") == 2
    extras = [r for r in rows if r.reference.startswith("x-")]
    assert [r.reference for r in extras] == ["x-1", "x-2"] == applied["extra"]
    assert all(r.type == "capture" and r.amount > 0 and r.currency == "CNY" for r in extras)
    assert len({r.txn_id for r in extras}) == 2
    assert apply_faults(KNOWN, faults, CHANNEL, date(2026, 3, 2)) == (rows, applied)  # the same seed, the same file


def test_a_rate_hits_each_class_at_about_that_fraction_and_the_seed_decides_which() -> None:
    rows = [Row(n, AT, "capture", f"pay_{n}", f"pi-{n}", "", "", "CNY", 1000 + n, 4) for n in range(20_000)]
    faults = StatementFaults(channel=ACQ, date=DAY, rate=0.05, seed=11)
    written, applied = apply_faults(rows, faults, CHANNEL, date(2026, 3, 2))
    for name in ("missing", "amount", "status", "duplicate", "extra"):
        assert 800 <= len(applied[name]) <= 1200, name
    assert len(applied["extra"]) == 1000  # rate x rows, exactly
    assert len(written) == 20_000 - len(applied["missing"]) + len(applied["duplicate"]) + 1000
    again, _ = apply_faults(rows, faults, CHANNEL, date(2026, 3, 2))
    _other, other_applied = apply_faults(rows, StatementFaults(rate=0.05, seed=12), CHANNEL, date(2026, 3, 2))
    assert again == written
    assert other_applied["missing"] != applied["missing"]
    assert not {r.amount for r in written} & {0}


# ---- over HTTP -----------------------------------------------------------------------------------------------------


def sale(sim: SimulatorClient, channel: str, reference: str, amount: int, currency: str = "CNY") -> Any:
    return sim.authorise(
        channel=channel, reference=reference, amount=amount, currency=currency, instrument=CARD, capture=True
    )


def _day(sim: SimulatorClient, channel: str) -> None:
    """A day on `channel`: captures, a refund, a reversal, a paid and a returned payout, a charged-then-timed-out
    sale; a decline and an authorisation that move nothing."""
    sim.set_clock(f"{DAY}T10:00:00+08:00")
    sim.set_faults(channel, payout_delay_ms=0)
    currency = "HKD" if channel == "acq-global-c" else "CNY"
    sale(sim, channel, "s-1", 10_000, currency)
    sim.refund(channel=channel, reference="s-1", refund_reference="s-1-r1", amount=2_500)
    sale(sim, channel, "s-2", 3_000, currency)
    sim.reverse(channel=channel, reference="s-2")
    sale(sim, channel, "s-3", 4_000, currency)
    sale(sim, channel, "s-4", 2_051, currency)  # declined
    with pytest.raises(SimulatorTimeout):
        sale(sim, channel, "s-5", 1_055, currency)  # charged, then timed out
    sim.authorise(channel=channel, reference="s-6", amount=999, currency=currency, instrument=CARD)  # authorised only
    account = {"last4": "4455", "name": "示例"}
    sim.payout(channel=channel, reference="stl-1-p1", amount=500_000, currency=currency, account=account)
    sim.payout(channel=channel, reference="fault-return-closed-1", amount=7_700, currency=currency, account=account)


EXPECTED_DAY = [
    ("capture", "s-1", 10_000, "success"),
    ("refund", "s-1-r1", -2_500, "success"),
    ("capture", "s-2", 3_000, "success"),
    ("reversal", "s-2", -3_000, "success"),
    ("capture", "s-3", 4_000, "success"),
    ("capture", "s-5", 1_055, "success"),
    ("payout", "stl-1-p1", 500_000, "success"),
    ("payout", "fault-return-closed-1", 7_700, "returned"),
]


@pytest.mark.parametrize(("channel", "fmt"), [(ACQ, "csv_v1"), ("acq-bank-b", "csv_v2"), ("acq-global-c", "fixed_v1")])
def test_each_channel_writes_its_own_layout_with_payments_refunds_and_payouts(
    simulator: SimulatorClient, channel: str, fmt: str
) -> None:
    _day(simulator, channel)
    got = simulator.statement_file(channel=channel, date=DAY)
    assert got.format == fmt
    assert got.content_type.startswith("text/plain" if fmt == "fixed_v1" else "text/csv")
    parsed = parse(fmt, got.text)
    assert [(r["type"], r["ours"], r["amount"], r["status"]) for r in parsed["rows"]] == EXPECTED_DAY
    journal = {row["object_id"] for row in simulator.journal_all(channel=channel)}
    assert {r["txn_id"] for r in parsed["rows"]} <= journal
    fees = [r["fee"] for r in parsed["rows"]]
    assert fees[1] == fees[3] == fees[6] == fees[7] == 0
    if fmt == "csv_v1":
        assert parsed["totals"] == [("CNY", 6, 10_000 - 2_500 + 3_000 - 3_000 + 4_000 + 1_055, sum(fees))]
    if fmt == "csv_v2":
        assert parsed["rows"][1]["original"] == parsed["rows"][0]["txn_id"]  # the refund names its payment
        assert parsed["rows"][3]["original"] == parsed["rows"][2]["txn_id"]
    if fmt == "fixed_v1":
        assert parsed["header"] == (channel, "20260302")
        assert parsed["totals"] == (8, sum(amount for _, _, amount, _ in EXPECTED_DAY))
    # The same statement in every other layout says the same.
    for other in FORMATS:
        text = simulator.statement(channel=channel, date=DAY, format=other)
        assert essentials(parse(other, text)["rows"]) == essentials(parsed["rows"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_fault_class_shows_in_every_layout(simulator: SimulatorClient, fmt: str) -> None:
    simulator.put_channel(ACQ, {**next(c for c in simulator.channels() if c["id"] == ACQ), "statement_format": fmt})
    _day(simulator, ACQ)
    clean = parse(fmt, simulator.statement(channel=ACQ, date=DAY))["rows"]
    stored = simulator.set_statement_faults(
        channel=ACQ, date=DAY, missing=["s-3"], extra=2, amount=["s-1-r1"], status=["s-5", "stl-1-p1"],
        duplicate=["s-1"], seed=3,
    )  # fmt: skip
    assert stored["missing"] == ["s-3"]
    assert stored["extra"] == 2
    faulty = parse(fmt, simulator.statement(channel=ACQ, date=DAY))["rows"]
    by_ours = {r["ours"]: r for r in clean}
    assert "s-3" not in {r["ours"] for r in faulty}  # missing
    extras = [r for r in faulty if r["ours"].startswith("x-")]
    assert [r["ours"] for r in extras] == ["x-1", "x-2"]  # extra: references we never sent
    assert not {r["txn_id"] for r in extras} & {r["txn_id"] for r in clean}
    refund = next(r for r in faulty if r["ours"] == "s-1-r1")
    assert refund["amount"] != by_ours["s-1-r1"]["amount"]
    assert refund["amount"] < 0
    assert next(r for r in faulty if r["ours"] == "s-5")["status"] == "failed"  # status
    assert next(r for r in faulty if r["ours"] == "stl-1-p1")["status"] == "returned"
    doubled = [r for r in faulty if r["ours"] == "s-1" and r["type"] == "capture"]
    assert len(doubled) == 2
    assert doubled[0] == doubled[1]
    untouched = [r for r in clean if r["ours"] in ("s-2", "fault-return-closed-1")]
    assert all(r in faulty for r in untouched)
    assert len(faulty) == len(clean) - 1 + 2 + 1
    listed = simulator.statement_faults(channel=ACQ, date=DAY)
    assert listed[0]["applied"] == {
        "missing": ["s-3"], "amount": ["s-1-r1"], "status": ["s-5", "stl-1-p1"], "duplicate": ["s-1"],
        "extra": ["x-1", "x-2"],
    }  # fmt: skip


def test_a_seeded_rate_gives_the_same_file_every_time(simulator: SimulatorClient) -> None:
    simulator.set_clock(f"{DAY}T10:00:00+08:00")
    for n in range(60):
        sale(simulator, ACQ, f"r-{n}", 1_000 + n * 100)
    simulator.set_statement_faults(channel=ACQ, date=DAY, rate=0.2, seed=42)
    first = simulator.statement(channel=ACQ, date=DAY)
    assert simulator.statement(channel=ACQ, date=DAY) == first
    applied = simulator.statement_faults(channel=ACQ, date=DAY)[0]["applied"]
    assert applied["missing"]
    assert applied["amount"]
    assert applied["status"]
    assert applied["duplicate"]
    assert len(applied["extra"]) == 12
    listed = {r["ours"] for r in parse("csv_v1", first)["rows"]}
    assert not listed & set(applied["missing"])
    simulator.set_statement_faults(channel=ACQ, date=DAY, rate=0.2, seed=43)
    assert simulator.statement(channel=ACQ, date=DAY) != first


def test_a_late_file_is_not_ready_until_its_time(simulator: SimulatorClient) -> None:
    simulator.set_clock(f"{DAY}T10:00:00+08:00")
    sale(simulator, ACQ, "late-1", 1_000)
    simulator.set_statement_faults(channel=ACQ, date=DAY, late_until=f"{DAY}T12:00:00+08:00")
    with pytest.raises(SimulatorError) as caught:
        simulator.statement(channel=ACQ, date=DAY)
    assert (caught.value.status, caught.value.code) == (404, "statement_not_ready")
    assert caught.value.error["ready_at"] == f"{DAY}T12:00:00+08:00"
    assert simulator.statement(channel=ACQ, date="2026-03-03").count("\n") == 1  # another date is not late
    simulator.set_clock(f"{DAY}T12:00:00+08:00")
    rows = parse("csv_v1", simulator.statement(channel=ACQ, date=DAY))["rows"]
    assert [r["ours"] for r in rows] == ["late-1"]


def test_fault_settings_are_validated_listed_replaced_and_forgotten_on_reset(simulator: SimulatorClient) -> None:
    def refused(**body: Any) -> SimulatorError:
        with pytest.raises(SimulatorError) as caught:
            simulator.request("POST", "/v1/admin/statement-faults", {"channel": ACQ, "date": DAY, **body})
        return caught.value

    assert (refused(channel="nowhere").status, refused(channel="nowhere").code) == (404, "unknown_channel")
    for body, param in (
        ({"date": "2026-02-30"}, "date"),
        ({"rate": 1.5}, "rate"),
        ({"extra": -1}, "extra"),
        ({"missing": "s-1"}, "missing"),
        ({"status": ["not ok"]}, "status"),
        ({"late_until": "tomorrow"}, "late_until"),
        ({"late_until": "2026-03-02T10:00:00"}, "late_until"),
        ({"seed": "x"}, "seed"),
        ({"wrong": 1}, "wrong"),
    ):
        error = refused(**body)
        assert (error.status, error.code, error.param) == (400, "invalid_faults", param)
    assert simulator.statement_faults() == []
    simulator.set_statement_faults(channel=ACQ, date=DAY, missing=["a"])
    simulator.set_statement_faults(channel="acq-bank-b", date=DAY, extra=1)
    simulator.set_statement_faults(channel=ACQ, date=DAY, duplicate=["b"])  # replaces, not merges
    assert [(f["channel"], f["missing"], f["duplicate"]) for f in simulator.statement_faults()] == [
        ("acq-bank-b", [], []),
        (ACQ, [], ["b"]),
    ]
    assert [f["channel"] for f in simulator.statement_faults(channel=ACQ)] == [ACQ]
    assert simulator.statement_faults(date="2026-03-03") == []
    simulator.set_statement_faults(channel="acq-bank-b", date=DAY)  # nothing: cleared
    assert [f["channel"] for f in simulator.statement_faults()] == [ACQ]
    simulator.reset()
    assert simulator.statement_faults() == []
    with pytest.raises(SimulatorError) as caught:
        simulator.statement(channel=ACQ, date=DAY, format="xml")
    assert (caught.value.status, caught.value.code) == (400, "invalid_format")


def test_statement_format_is_a_validated_channel_field(simulator: SimulatorClient) -> None:
    formats = {c["id"]: c["statement_format"] for c in simulator.channels()}
    acquirers = {c["id"] for c in simulator.channels() if c["kind"] == "acquirer"}
    assert {"csv_v1", "csv_v2", "fixed_v1"} <= {formats[a] for a in acquirers}
    created = simulator.put_channel("bank-z", {"kind": "wallet", "currencies": ["CNY"]})
    assert created["statement_format"] == "csv_v1"
    for body in (
        {"kind": "wallet", "currencies": ["CNY"], "statement_format": "xml"},
        {"id": "a-channel-id-over-twenty", "kind": "wallet", "currencies": ["CNY"], "statement_format": "fixed_v1"},
    ):
        with pytest.raises(SimulatorError) as caught:
            simulator.put_channel(str(body.get("id", "bank-z")), body)
        assert (caught.value.status, caught.value.param) == (400, "statement_format")


def test_the_statement_command_takes_a_fault_file_and_names_files_by_layout(
    simulator: SimulatorClient, simulator_server: SimulatorProcess, tmp_path: Any
) -> None:
    _day(simulator, "acq-global-c")
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"channel": "acq-global-c", "missing": ["s-1"], "extra": 1}]), encoding="utf-8")
    out = tmp_path / "out"

    def run(*extra: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "simulator", "statement", "--db", str(simulator_server.db), "--config",
             str(simulator_server.config), "--date", DAY, "--channel", "acq-global-c", *extra],
            cwd=ROOT, capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )  # fmt: skip
        done.stdout, done.stderr = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")  # bytes as written
        return done

    done = run("--out-dir", str(out), "--faults", str(faults))
    assert done.returncode == 0, done.stderr
    written = out / "acq-global-c_20260302.txt"
    assert done.stdout.strip() == str(written)
    rows = parse("fixed_v1", written.read_text(encoding="ascii"))["rows"]
    assert [r["ours"] for r in rows] == ["s-1-r1", "s-2", "s-2", "s-3", "s-5", "stl-1-p1", "fault-return-closed-1",
                                         "x-1"]  # fmt: skip
    # Without a fault file: the faults stored on the server, the same file the server answers; --format switches.
    simulator.set_statement_faults(channel="acq-global-c", date=DAY, duplicate=["s-3"])
    assert run().stdout == simulator.statement(channel="acq-global-c", date=DAY)
    v2 = run("--format", "csv_v2").stdout
    assert essentials(parse("csv_v2", v2)["rows"]) == essentials(
        parse("fixed_v1", simulator.statement(channel="acq-global-c", date=DAY))["rows"]
    )
    faults.write_text(json.dumps({"rate": 2}), encoding="utf-8")
    bad = run("--faults", str(faults))
    assert bad.returncode == 2
    assert "rate" in bad.stderr
