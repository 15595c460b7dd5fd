"""The channel simulator for the tests that need it.

`simulator_server` (session): one `python -m simulator` process on a free port with a fresh temporary database and the
shipped channels without their latencies, and timeouts that hang 300 ms instead of 15 s.
`simulator` (function): a signed client on it, after a reset (empty storage, channels as configured, real clock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.client import SimulatorClient
from simulator.config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY_ID = "tests"
TEST_SECRET = "tests-simulator-secret"
TEST_HANG_MS = 300


@dataclass(frozen=True)
class SimulatorProcess:
    url: str
    db: Path
    config: Path
    key_id: str
    secret: str
    process: subprocess.Popen[str]

    def client(self, **kw: object) -> SimulatorClient:
        return SimulatorClient(self.url, key_id=self.key_id, secret=self.secret, **kw)  # type: ignore[arg-type]


def start_simulator(workdir: Path, *extra: str, config: Path | None = None) -> SimulatorProcess:
    """Start `python -m simulator` on a free port (it prints the address on its first line)."""
    db = workdir / "simulator.sqlite3"
    if config is None:
        raw = json.loads(DEFAULT_CONFIG.read_text())
        for channel in raw["channels"]:
            channel["faults"].update(latency_ms=0, latency_jitter_ms=0, hang_ms=TEST_HANG_MS)
        config = workdir / "channels.json"
        config.write_text(json.dumps(raw))
    command = [
        sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
        "--config", str(config), "--keys", f"{TEST_KEY_ID}:{TEST_SECRET}", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ})
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=20)
    if not first_line or "listening on" not in first_line[0]:
        process.kill()
        raise RuntimeError(f"the simulator did not start: {first_line!r}")
    url = first_line[0].split()[3]
    return SimulatorProcess(url, db, config, TEST_KEY_ID, TEST_SECRET, process)


def stop_simulator(server: SimulatorProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def simulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    server = start_simulator(tmp_path_factory.mktemp("simulator"))
    yield server
    stop_simulator(server)


@pytest.fixture
def simulator(simulator_server: SimulatorProcess) -> Iterator[SimulatorClient]:
    client = simulator_server.client()
    client.reset()
    yield client
    client.close()
