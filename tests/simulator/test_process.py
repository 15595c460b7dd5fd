"""The simulator starts with its one command, serves the shipped channels, and stops cleanly."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

from simulator.client import SimulatorClient
from simulator.config import DEFAULT_CONFIG, load_channels
from tests.simulator_fixtures import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_one_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    db = tmp_path / "var" / "simulator.sqlite3"
    command = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with SimulatorClient(url) as client:  # the default development key
            assert len(client.channels()) == 9
            payment = client.authorise(
                channel="acq-bank-b", reference="boot-1", amount=100, currency="CNY",
                instrument={"kind": "card", "token": "t"}, capture=True,
            )  # fmt: skip
            assert payment.state == "captured"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert out.startswith(f"simulator listening on http://127.0.0.1:{port}")
    assert db.exists()


def test_a_bad_config_file_stops_the_start_with_a_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "channels.json"
    config.write_text('{"channels": [{"id": "x-1", "kind": "bank", "currencies": ["CNY"]}]}')
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--port", "0", "--db", str(tmp_path / "s.sqlite3"),
         "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "kind must be one of" in done.stderr


def test_the_shipped_channels() -> None:
    channels = load_channels(DEFAULT_CONFIG)
    kinds = {ch.kind for ch in channels.values()}
    assert kinds == {"acquirer", "bank_debit", "wallet", "prepaid", "digital_rmb", "clearing"}
    assert all(ch.faults.down is False and ch.faults.triggers for ch in channels.values())
    assert channels["acq-unionpay-a"].currencies == ("CNY", "HKD", "USD", "EUR", "JPY")
