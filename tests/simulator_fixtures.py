"""The channel simulator for the tests that need it.

`simulator_server` (session): one `python -m simulator` process on a free port with a fresh temporary database, the
shipped channels without their latencies, and timeouts that hang 300 ms instead of 15 s.
`simulator` (function): a signed client on it, after a reset (empty storage, channels as configured, real clock).
`sim` (function): the same client, with the platform pointed at the simulator (settings.SIMULATOR) and its connectors
built afresh before and after: for tests that pay, settle or reconcile through the real channel process. A module that
needs more (a channel's faults, a setting) overrides `sim` and takes this one as its argument.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator import process
from simulator.client import SimulatorClient
from simulator.process import ROOT, SimulatorProcess

__all__ = ["ROOT", "SimulatorProcess", "sim", "simulator", "simulator_server", "start_simulator", "stop_simulator"]

TEST_KEY_ID = "tests"
TEST_SECRET = "tests-simulator-secret"
TEST_HANG_MS = 300


def start_simulator(workdir: Path, *extra: str, config: Path | None = None) -> SimulatorProcess:
    config = config or process.quiet_config(workdir, TEST_HANG_MS)
    return process.start(workdir, key_id=TEST_KEY_ID, secret=TEST_SECRET, config=config, extra=extra)


stop_simulator = process.stop


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


@pytest.fixture
def sim(simulator: SimulatorClient, simulator_server: SimulatorProcess, settings: Any) -> Iterator[SimulatorClient]:
    from payments.connectors import reset_connectors

    settings.SIMULATOR = {
        "URL": simulator_server.url,
        "KEY_ID": simulator_server.key_id,
        "SECRET": simulator_server.secret,
        "CONNECT_TIMEOUT": 1.0,
        "READ_TIMEOUT": 5.0,
    }
    reset_connectors()
    yield simulator
    reset_connectors()
