"""`python -m simulator --host 127.0.0.1 --port 8100 --db var/simulator.sqlite3` serves the simulator;
`python -m simulator statement --db ... --date YYYY-MM-DD [--channel ID] [--out-dir DIR] [--faults FILE.json]
[--format FORMAT]` writes statement files; `python -m simulator dispute open|decide ...` opens or decides a dispute in
the database (a running server's feed carries its notices)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from . import signing
from .config import DEFAULT_CONFIG, ConfigError, load_channels
from .engine import Call, SimError, Simulator
from .server import SimulatorServer
from .statement import EXTENSIONS, STATEMENT_FORMATS, StatementFaults, build, parse_faults
from .store import Store


def _keys(spec: str | None) -> dict[str, str]:
    spec = spec or os.environ.get("SIMULATOR_KEYS") or f"{signing.DEFAULT_KEY_ID}:{signing.DEFAULT_SECRET}"
    return signing.parse_keys(spec)


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Run the channel simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port (printed on the first line)")
    parser.add_argument("--db", default="var/simulator.sqlite3", help="the simulator's own SQLite file")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the channels JSON file")
    parser.add_argument("--keys", help="callers as id:secret[,id:secret]; default $SIMULATOR_KEYS or the dev key")
    parser.add_argument("--otp-ttl", type=int, default=300, help="seconds a verification code lives")
    parser.add_argument("--otp-attempts", type=int, default=5, help="wrong codes before a verification locks")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        keys = _keys(args.keys)
        sim = Simulator(
            Store(args.db), Path(args.config), otp_ttl_seconds=args.otp_ttl, otp_max_attempts=args.otp_attempts
        )
    except (ConfigError, ValueError, OSError) as exc:
        parser.exit(2, f"simulator: {exc}\n")
    server = SimulatorServer((args.host, args.port), sim, keys, quiet=not args.verbose)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"simulator listening on http://{host}:{port} ({len(sim.channels)} channels, db {args.db})", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def statement(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator statement", description="Write channels' daily statement files from the journal."
    )
    parser.add_argument("--db", default="var/simulator.sqlite3")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--date", required=True, type=date.fromisoformat, help="the business date, YYYY-MM-DD")
    parser.add_argument("--channel", action="append", help="one channel (repeatable); default every configured one")
    parser.add_argument(
        "--out-dir", help="write <channel>_<YYYYMMDD>.csv (.txt for fixed_v1) files here; default print to stdout"
    )
    parser.add_argument(
        "--faults",
        help="a JSON file of discrepancies (an object or a list, as POST /v1/admin/statement-faults; without channel"
        " or date an item applies to every channel written); default those stored in the database",
    )
    parser.add_argument("--format", choices=STATEMENT_FORMATS, help="this layout instead of each channel's own")
    args = parser.parse_args(argv)
    if not Path(args.db).exists():
        parser.error(f"no simulator database at {args.db}")
    try:
        configured = load_channels(Path(args.config))
    except (ConfigError, ValueError, OSError) as exc:
        parser.exit(2, f"simulator: {exc}\n")
    unknown = [channel for channel in args.channel or [] if channel not in configured]
    if unknown:
        parser.error(f"no channel {unknown[0]} in {args.config}")
    given = _fault_file(parser, args.faults) if args.faults else None
    store = Store(args.db)
    # The server's clock lives in its process: here every payout counts as finished (listed with its result).
    now = datetime.max.replace(tzinfo=UTC)
    for channel_id in args.channel or sorted(configured):
        faults = None
        if given is not None:
            faults = next(
                (f for f in given if f.channel in (None, channel_id) and f.date in (None, args.date.isoformat())),
                StatementFaults(),
            )
        made = build(store, configured[channel_id], args.date, now, format=args.format, faults=faults)
        if args.out_dir:
            out = Path(args.out_dir) / f"{channel_id}_{args.date:%Y%m%d}.{EXTENSIONS[made.format]}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(made.text.encode())
            print(out)
        else:
            sys.stdout.buffer.write(made.text.encode())
            sys.stdout.flush()
    return 0


def dispute(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator dispute", description="Open or decide a dispute, as POST /v1/admin/disputes does."
    )
    parser.add_argument("--db", default="var/simulator.sqlite3")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    actions = parser.add_subparsers(dest="action", required=True)
    opening = actions.add_parser("open", help="dispute a captured payment")
    opening.add_argument("--channel", required=True)
    opening.add_argument("--reference", required=True, help="the payment's reference (the caller's)")
    opening.add_argument("--kind", required=True, choices=("retrieval", "chargeback", "error_adjustment"))
    opening.add_argument("--amount", type=int, help="minor units; default what is captured and not refunded")
    opening.add_argument("--reason-code", default="")
    opening.add_argument("--outcome", choices=("won", "lost"), default="won", help="the decision the channel will make")
    deciding = actions.add_parser("decide", help="decide a dispute now")
    deciding.add_argument("dispute_id")
    deciding.add_argument("--outcome", choices=("won", "lost"), required=True)
    args = parser.parse_args(argv)
    if not Path(args.db).exists():
        parser.error(f"no simulator database at {args.db}")
    try:
        sim = Simulator(Store(args.db), Path(args.config))
    except (ConfigError, ValueError, OSError) as exc:
        parser.exit(2, f"simulator: {exc}\n")
    call = Call(key_id="cli")
    try:
        if args.action == "open":
            body = {"channel": args.channel, "reference": args.reference, "kind": args.kind}
            body |= {"reason_code": args.reason_code, "outcome": args.outcome}
            if args.amount is not None:
                body["amount"] = args.amount
            outcome = sim.dispute_open(body, call)
        else:
            outcome = sim.dispute_decide(args.dispute_id, {"outcome": args.outcome}, call)
    except SimError as exc:
        parser.exit(2, f"simulator: {exc.code}: {exc.message}\n")
    print(json.dumps(outcome.body, ensure_ascii=False))
    return 0


def _fault_file(parser: argparse.ArgumentParser, path: str) -> list[StatementFaults]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        items = raw if isinstance(raw, list) else [raw]
        return [parse_faults(item, require_target=False) for item in items]
    except (OSError, ValueError) as exc:
        parser.exit(2, f"simulator: {path}: {exc}\n")
    except SimError as exc:
        parser.exit(2, f"simulator: {path}: {exc.param}: {exc.message}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["statement"]:
        return statement(argv[1:])
    if argv[:1] == ["dispute"]:
        return dispute(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
