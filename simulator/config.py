"""Channels, their currencies, cut-offs and fault profiles, loaded from a JSON file."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(__file__).with_name("channels.json")

KINDS = ("acquirer", "bank_debit", "wallet", "prepaid", "digital_rmb", "clearing")
BALANCE_KINDS = ("bank_debit", "wallet", "prepaid", "digital_rmb")
# Why a payout comes back (the beneficiary's bank refuses the credit after accepting the instruction).
PAYOUT_RETURN_REASONS = ("account_closed", "name_mismatch", "account_frozen", "invalid_account")
# ISO 4217 minor units of the currencies the simulator knows.
CURRENCY_EXPONENT = {"CNY": 2, "HKD": 2, "USD": 2, "EUR": 2, "JPY": 0}
CHANNEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")
CUTOFF = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# The layouts a channel writes its daily statement in (see simulator.statement); fixed_v1's header has 20 columns for
# the channel id.
STATEMENT_FORMATS = ("csv_v1", "csv_v2", "fixed_v1")
FIXED_CHANNEL_WIDTH = 20


class ConfigError(ValueError):
    """A channel or fault profile that cannot be accepted; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class FaultProfile:
    """Random faults (drawn from the channel's seeded RNG) and timing for one channel.

    Rates are probabilities per charging call (authorise, account hold, payout); their sum must not exceed 1.
    `hang_ms` is how long a simulated timeout keeps the caller waiting before the 504 answer. A payout is accepted at
    once and its result (paid, or returned for `payout_return_reason` at `payout_return_rate`) is due
    `payout_delay_ms` later. A clearing instruction is accepted the same way and its result (confirmed, or failed at
    `payout_return_rate`) is due `payout_delay_ms` later too. A dispute the merchant answered is decided (its
    planned outcome, won or lost) `dispute_decision_ms` after the answer.
    """

    decline_rate: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    charged_timeout_rate: float = 0.0
    payout_return_rate: float = 0.0
    payout_return_reason: str = "account_closed"
    payout_delay_ms: int = 3000
    dispute_decision_ms: int = 3000
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    hang_ms: int = 15000
    down: bool = False
    triggers: bool = True
    seed: int = 0

    RATES = ("decline_rate", "error_rate", "timeout_rate", "charged_timeout_rate", "payout_return_rate")
    MILLIS = ("latency_ms", "latency_jitter_ms", "hang_ms", "payout_delay_ms", "dispute_decision_ms")
    # A card scheme takes weeks to decide a dispute: its delay may be up to 30 days (the others, 10 minutes).
    LONGEST = {"dispute_decision_ms": 30 * 24 * 3600 * 1000}

    def merged(self, changes: dict[str, Any]) -> FaultProfile:
        known = set(self.__dataclass_fields__)
        for name, value in changes.items():
            if name not in known:
                raise ConfigError(f"unknown fault setting {name!r}", param=name)
            if name in self.RATES:
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise ConfigError(f"{name} must be a number between 0 and 1", param=name)
            elif name in self.MILLIS:
                most = self.LONGEST.get(name, 600_000)
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
                    raise ConfigError(f"{name} must be an integer number of milliseconds (0..{most})", param=name)
            elif name in ("down", "triggers"):
                if not isinstance(value, bool):
                    raise ConfigError(f"{name} must be true or false", param=name)
            elif name == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError("seed must be an integer", param=name)
            elif name == "payout_return_reason" and value not in PAYOUT_RETURN_REASONS:
                raise ConfigError(f"payout_return_reason must be one of {', '.join(PAYOUT_RETURN_REASONS)}", param=name)
        profile = replace(self, **changes)
        if sum(getattr(profile, r) for r in self.RATES) > 1:
            raise ConfigError("the fault rates add up to more than 1", param="decline_rate")
        return profile


@dataclass(frozen=True)
class Channel:
    id: str
    kind: str
    name: str
    currencies: tuple[str, ...]
    cutoff: str = "23:00"
    fee_bps: int = 0
    faults: FaultProfile = field(default_factory=FaultProfile)
    statement_format: str = "csv_v1"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["currencies"] = list(self.currencies)
        return data

    @property
    def instrument_kinds(self) -> tuple[str, ...]:
        return ("card", "code") if self.kind == "acquirer" else ("account",)


def channel_from_json(channel_id: str, data: dict[str, Any]) -> Channel:
    if not isinstance(data, dict):
        raise ConfigError("a channel is a JSON object")
    if not CHANNEL_ID.match(channel_id):
        raise ConfigError("channel ids are 2-48 lowercase letters, digits and dashes", param="id")
    unknown = set(data) - {"id", "kind", "name", "currencies", "cutoff", "fee_bps", "faults", "statement_format"}
    if unknown:
        raise ConfigError(f"unknown channel field {sorted(unknown)[0]!r}", param=sorted(unknown)[0])
    if data.get("id", channel_id) != channel_id:
        raise ConfigError("the body's id differs from the path's", param="id")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}", param="kind")
    currencies = data.get("currencies")
    if (
        not isinstance(currencies, list)
        or not currencies
        or any(c not in CURRENCY_EXPONENT for c in currencies)
        or len(set(currencies)) != len(currencies)
    ):
        raise ConfigError(f"currencies must be a non-empty list of {', '.join(CURRENCY_EXPONENT)}", param="currencies")
    cutoff = data.get("cutoff", "23:00")
    if not isinstance(cutoff, str) or not CUTOFF.match(cutoff):
        raise ConfigError("cutoff must be HH:MM (Asia/Shanghai)", param="cutoff")
    fee_bps = data.get("fee_bps", 0)
    if isinstance(fee_bps, bool) or not isinstance(fee_bps, int) or not 0 <= fee_bps <= 10_000:
        raise ConfigError("fee_bps must be an integer between 0 and 10000", param="fee_bps")
    faults = data.get("faults", {})
    if not isinstance(faults, dict):
        raise ConfigError("faults must be an object", param="faults")
    name = data.get("name", channel_id)
    if not isinstance(name, str) or not name:
        raise ConfigError("name must be a non-empty string", param="name")
    statement_format = data.get("statement_format", "csv_v1")
    if statement_format not in STATEMENT_FORMATS:
        raise ConfigError(f"statement_format must be one of {', '.join(STATEMENT_FORMATS)}", param="statement_format")
    if statement_format == "fixed_v1" and len(channel_id) > FIXED_CHANNEL_WIDTH:
        raise ConfigError(
            f"a fixed_v1 statement has room for a channel id of {FIXED_CHANNEL_WIDTH} characters",
            param="statement_format",
        )
    return Channel(
        id=channel_id,
        kind=kind,
        name=name,
        currencies=tuple(currencies),
        cutoff=cutoff,
        fee_bps=fee_bps,
        faults=FaultProfile().merged(faults),
        statement_format=statement_format,
    )


def load_channels(path: Path) -> dict[str, Channel]:
    """Read `{"channels": [{"id": ..., "kind": ..., ...}, ...]}`."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    items = raw.get("channels") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected {{'channels': [...]}} with at least one channel")
    channels: dict[str, Channel] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ConfigError(f"{path}: every channel needs a string id")
        if item["id"] in channels:
            raise ConfigError(f"{path}: channel {item['id']} appears twice")
        channels[item["id"]] = channel_from_json(item["id"], item)
    return channels
