"""Start and stop `python -m simulator` as a child process (the tests' fixture and the benchmark use this)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import SimulatorClient
from .config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SimulatorProcess:
    url: str
    db: Path
    config: Path
    key_id: str
    secret: str
    process: subprocess.Popen[str]

    def client(self, **kw: Any) -> SimulatorClient:
        return SimulatorClient(self.url, key_id=self.key_id, secret=self.secret, **kw)


def quiet_config(workdir: Path, hang_ms: int) -> Path:
    """The shipped channels without latency, and with simulated timeouts that hang `hang_ms`."""
    raw = json.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for channel in raw["channels"]:
        channel.setdefault("faults", {}).update(latency_ms=0, latency_jitter_ms=0, hang_ms=hang_ms)
    config = workdir / "channels.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    return config


def start(workdir: Path, *, key_id: str, secret: str, config: Path, extra: tuple[str, ...] = ()) -> SimulatorProcess:
    """Start the simulator on a free port with a fresh database in `workdir`; it prints its address first."""
    db = workdir / "simulator.sqlite3"
    command = [
        sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0", "--db", str(db),
        "--config", str(config), "--keys", f"{key_id}:{secret}", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module
    first_line: list[str] = []

    def read_first_line() -> None:
        assert process.stdout is not None
        first_line.append(process.stdout.readline())

    reader = threading.Thread(target=read_first_line, daemon=True)
    reader.start()
    reader.join(timeout=20)
    if not first_line or "listening on" not in first_line[0]:
        process.kill()
        raise RuntimeError(f"the simulator did not start: {first_line!r}")
    return SimulatorProcess(first_line[0].split()[3], db, config, key_id, secret, process)


def stop(server: SimulatorProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
