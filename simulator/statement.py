"""A channel's daily statement: its money movements and payouts for one business date, built from the journal, in the
channel's layout (`csv_v1`, `csv_v2` or `fixed_v1`), with the discrepancies injected for that channel and date.

The writers are pure (`render(format, channel, day, rows)`), so a benchmark can write a large statement without a
database; `statement_rows` reads the rows from the store, `apply_faults` injects the discrepancies.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from .config import CURRENCY_EXPONENT, FIXED_CHANNEL_WIDTH, STATEMENT_FORMATS, Channel
from .engine import LOCAL_TZ, REFERENCE, SimError, fee_for
from .store import Store

CONTENT_TYPES = {
    "csv_v1": "text/csv; charset=utf-8",
    "csv_v2": "text/csv; charset=utf-8",
    "fixed_v1": "text/plain; charset=us-ascii",
}
EXTENSIONS = {"csv_v1": "csv", "csv_v2": "csv", "fixed_v1": "txt"}

COLUMNS = (
    "record",
    "seq",
    "txn_time",
    "business_date",
    "channel",
    "type",
    "txn_id",
    "reference",
    "operation_reference",
    "currency",
    "amount_minor",
    "fee_minor",
    "net_minor",
    "status",
)
V2_HEADER = "交易日期;交易时间;商户订单号;渠道流水号;原交易流水号;交易类型;币种;交易金额;手续费;状态"
V2_TYPES = {
    "capture": "消费",
    "refund": "退货",
    "reversal": "撤销",
    "payout": "代付",
    "chargeback": "拒付",
    "retrieval": "调单",
    "error_adjustment": "差错",
}
V2_STATUS = {"success": "成功", "failed": "失败", "returned": "退回", "opened": "受理", "won": "胜诉", "lost": "败诉"}
FIXED_TYPES = {
    "capture": "01",
    "refund": "02",
    "reversal": "03",
    "payout": "04",
    "chargeback": "CB",
    "retrieval": "RR",
    "error_adjustment": "EA",
}
FIXED_STATUS = {"success": "S", "failed": "F", "returned": "R", "opened": "O", "won": "W", "lost": "L"}
FIXED_WIDTH = 160
# Journal operations that move money, and their statement type.
TYPES = {"sale": "capture", "capture": "capture", "refund": "refund", "reverse": "reversal", "hold_capture": "capture"}
STATUSES = ("success", "failed", "returned")
# Dispute rows: a dispute opened that day (`opened`), or decided (`won`, `lost`). Only a lost chargeback or error
# adjustment moves money (the amount debited, negative); the other dispute rows list the amount in dispute, positive.
DISPUTE_TYPES = ("chargeback", "retrieval", "error_adjustment")
DISPUTE_STATUSES = ("opened", "won", "lost")
FAULT_LISTS = ("missing", "amount", "status", "duplicate")
MAX_EXTRA = 1_000_000


class Row(NamedTuple):
    """One detail row. `reference` is the payment's (or hold's, or payout's) reference, `operation_reference` the
    refund's; `original_txn_id` is the original payment's channel id for a refund or reversal; `amount` is signed
    minor units (+ capture, − refund, − reversal, + payout); `at` is an aware datetime."""

    seq: int
    at: datetime
    type: str
    txn_id: str
    reference: str
    operation_reference: str
    original_txn_id: str
    currency: str
    amount: int
    fee: int
    status: str = "success"

    @property
    def our_reference(self) -> str:
        """The reference Mengka sent for this row: the refund's for a refund, else the payment's or payout's (a
        dispute row's: its payment's)."""
        return self.operation_reference if self.type == "refund" else self.reference

    @property
    def fault_key(self) -> str:
        """What a discrepancy names to meet this row: our reference, or for a dispute row the channel's dispute id
        (so that a payment's reference does not take its disputes with it)."""
        return self.txn_id if self.type in DISPUTE_TYPES else self.our_reference


def moves_money(kind: str, status: str) -> bool:
    """Whether a row of this type and status is money moved by the acquiring side (what the totals add up): a
    capture, refund or reversal, or a lost chargeback or error adjustment (not a payout, not a dispute opened or won,
    never a retrieval)."""
    if kind in DISPUTE_TYPES:
        return status == "lost" and kind != "retrieval"
    return kind != "payout"


def dispute_amount(kind: str, status: str, amount: int) -> int:
    """A dispute row's signed amount: the debit (negative) of a lost chargeback or error adjustment, else the amount
    in dispute (positive)."""
    return -abs(amount) if moves_money(kind, status) else abs(amount)


# ---- reading the journal -----------------------------------------------------------------------------------------


def statement_rows(store: Store, channel: str, day: date, now: datetime, *, cutoff: str = "00:00") -> list[Row]:
    """The channel's rows for a business date, in journal order: every call that moved money (a charged-then-timed-out
    sale too: money moved although its caller saw a 504), and every payout it accepted (listed `returned` once its
    result is due and is a return, `success` otherwise); then the day's dispute rows (`dispute_rows`)."""
    found = (
        store.connection()
        .execute(
            "SELECT j.seq, j.at, j.op, j.reference, j.op_reference, j.object_id, j.currency, j.money, j.fee,"
            " j.amount, r.payment_id, p.result, p.due_at"
            " FROM journal j"
            " LEFT JOIN refunds r ON j.op = 'refund' AND r.id = j.object_id"
            " LEFT JOIN payouts p ON j.op = 'payout' AND p.id = j.object_id"
            " WHERE j.channel = ? AND j.business_date = ?"
            " AND (j.money != 0 OR (j.op = 'payout' AND j.outcome IN ('ok', 'accepted_timeout')))"
            " ORDER BY j.seq",
            (channel, day.isoformat()),
        )
        .fetchall()
    )
    rows = []
    for row in found:
        at = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
        op = row["op"]
        if op == "payout":
            due = datetime.fromisoformat(row["due_at"].replace("Z", "+00:00"))
            returned = row["result"] == "returned" and due <= now
            rows.append(
                Row(row["seq"], at, "payout", row["object_id"], row["reference"], "", "", row["currency"],
                    row["amount"], 0, "returned" if returned else "success")
            )  # fmt: skip
            continue
        kind = TYPES[op]
        original = row["payment_id"] if kind == "refund" else row["object_id"] if kind == "reversal" else ""
        rows.append(
            Row(row["seq"], at, kind, row["object_id"], row["reference"],
                row["op_reference"] if kind == "refund" else "", original or "", row["currency"], row["money"],
                row["fee"])
        )  # fmt: skip
    return rows + dispute_rows(store, channel, day, now, cutoff=cutoff)


def dispute_rows(store: Store, channel: str, day: date, now: datetime, *, cutoff: str = "00:00") -> list[Row]:
    """The day's dispute rows, by time: each dispute opened on the business date (`opened`, the amount in dispute),
    and each decided in it (`won`, or `lost`: for a chargeback or error adjustment the amount debited, negative). A
    decision that fell due on the simulator's clock counts as made then, as the dispute inquiry shows it. `cutoff` is
    the channel's (HH:MM, Asia/Shanghai): the business date runs from the cut-off the day before. A row's seq is the
    journal seq of its dispute's opening; its txn id the channel's dispute id; its original id the payment's."""
    hour, minute = (int(part) for part in cutoff.split(":"))
    start = datetime.combine(day - timedelta(days=1), time(hour, minute), LOCAL_TZ)
    end = datetime.combine(day, time(hour, minute), LOCAL_TZ)
    start_iso, end_iso, now_iso = (_utc_iso(moment) for moment in (start, end, now))
    found = (
        store.connection()
        .execute(
            "SELECT d.*, COALESCE(j.seq, 0) AS seq,"
            " CASE WHEN d.state IN ('won', 'lost') THEN d.state"
            "      WHEN d.state = 'answered' AND d.decide_at <= :now THEN d.planned_outcome END AS outcome,"
            " CASE WHEN d.state IN ('won', 'lost') THEN d.decided_at"
            "      WHEN d.state = 'answered' AND d.decide_at <= :now THEN d.decide_at END AS decided"
            " FROM disputes d LEFT JOIN journal j ON j.op = 'dispute_open' AND j.object_id = d.id"
            " WHERE d.channel = :channel AND (d.business_date = :day OR d.state IN ('won', 'lost', 'answered'))",
            {"channel": channel, "day": day.isoformat(), "now": now_iso},
        )
        .fetchall()
    )
    rows: list[tuple[str, str, Row]] = []
    for row in found:

        def make(at_text: str, status: str, row: Any = row) -> Row:
            at = datetime.fromisoformat(at_text.replace("Z", "+00:00"))
            return Row(row["seq"], at, row["kind"], row["id"], row["reference"], "", row["payment_id"],
                       row["currency"], dispute_amount(row["kind"], status, row["amount"]), 0, status)  # fmt: skip

        if row["business_date"] == day.isoformat():
            rows.append((row["created_at"], row["id"], make(row["created_at"], "opened")))
        decided = row["decided"]
        if row["outcome"] is not None and decided is not None and start_iso <= decided < end_iso:
            rows.append((decided, row["id"], make(decided, row["outcome"])))
    rows.sort(key=lambda item: (item[0], item[1], item[2].status != "opened"))
    return [row for _at, _id, row in rows]


def _utc_iso(moment: datetime) -> str:
    """As the store writes instants (UTC, microseconds, `Z`): such strings sort as the instants do."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---- discrepancies -----------------------------------------------------------------------------------------------


@dataclass
class StatementFaults:
    """The discrepancies injected into one channel's statement for one business date."""

    channel: str | None = None
    date: str | None = None
    missing: list[str] = field(default_factory=list)
    extra: int = 0
    amount: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    late_until: str | None = None
    rate: float = 0.0
    seed: int = 0

    @property
    def empty(self) -> bool:
        return not (
            self.missing or self.extra or self.amount or self.status or self.duplicate or self.late_until or self.rate
        )

    def late(self, now: datetime) -> bool:
        return self.late_until is not None and now < datetime.fromisoformat(self.late_until.replace("Z", "+00:00"))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _fault_error(message: str, param: str) -> SimError:
    return SimError(400, "invalid_faults", message, param)


def parse_faults(body: Any, *, require_target: bool = True) -> StatementFaults:
    """Validate a fault body (`POST /v1/admin/statement-faults`, or one item of the CLI's `--faults` file)."""
    if not isinstance(body, dict):
        raise _fault_error("the faults are a JSON object", "body")
    unknown = set(body) - set(StatementFaults.__dataclass_fields__)
    if unknown:
        name = sorted(unknown)[0]
        raise _fault_error(f"unknown fault {name!r}", name)
    faults = StatementFaults()
    channel = body.get("channel")
    if channel is not None or require_target:
        if not isinstance(channel, str) or not channel:
            raise _fault_error("channel is required", "channel")
        faults.channel = channel
    day = body.get("date")
    if day is not None or require_target:
        try:
            faults.date = date.fromisoformat(day).isoformat() if isinstance(day, str) and len(day) == 10 else None
        except ValueError:
            faults.date = None
        if faults.date is None:
            raise _fault_error("date must be YYYY-MM-DD", "date")
    for name in FAULT_LISTS:
        value = body.get(name, [])
        if not isinstance(value, list) or not all(isinstance(ref, str) and REFERENCE.match(ref) for ref in value):
            raise _fault_error(f"{name} must be a list of references", name)
        setattr(faults, name, list(dict.fromkeys(value)))
    extra = body.get("extra", 0)
    if isinstance(extra, bool) or not isinstance(extra, int) or not 0 <= extra <= MAX_EXTRA:
        raise _fault_error(f"extra must be an integer between 0 and {MAX_EXTRA}", "extra")
    faults.extra = extra
    rate = body.get("rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise _fault_error("rate must be a number between 0 and 1", "rate")
    faults.rate = float(rate)
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fault_error("seed must be an integer", "seed")
    faults.seed = seed
    late = body.get("late_until")
    if late is not None:
        try:
            moment = datetime.fromisoformat(late.replace("Z", "+00:00")) if isinstance(late, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise _fault_error("late_until must be an ISO 8601 datetime with an offset, or null", "late_until")
        faults.late_until = moment.isoformat()
    return faults


def _flipped(row: Row) -> Row:
    if row.type in DISPUTE_TYPES:
        if row.status == "opened":
            return row  # an opening has no other status
        status = "won" if row.status == "lost" else "lost"
        return row._replace(status=status, amount=dispute_amount(row.type, status, row.amount))
    if row.status != "success":
        return row._replace(status="success")
    return row._replace(status="returned" if row.type == "payout" else "failed")


def _extra_rows(faults: StatementFaults, count: int, channel: Channel, day: date, rng: random.Random) -> list[Row]:
    """Rows the channel has and we never sent: captures under references `x-1`, `x-2`, ... at noon of the day."""
    noon = datetime.combine(day, time(12, 0), LOCAL_TZ)
    currency = channel.currencies[0]
    rows = []
    for n in range(1, count + 1):
        digest = hashlib.blake2b(f"{faults.seed}:{channel.id}:{day}:{n}".encode(), digest_size=12).hexdigest()
        amount = rng.randint(100, 99_999)
        rows.append(
            Row(0, noon + timedelta(seconds=n % 43_200), "capture", f"ext_{digest}", f"x-{n}", "", "",
                currency, amount, fee_for(amount, channel.fee_bps))
        )  # fmt: skip
    return rows


def apply_faults(
    rows: Sequence[Row], faults: StatementFaults | None, channel: Channel, day: date
) -> tuple[list[Row], dict[str, list[str]]]:
    """The rows as the channel writes them, and which references met which discrepancy.

    A reference in a list (ours: the payment's, refund's or payout's; for a dispute row, the channel's dispute id)
    affects every row it names. With `rate`, each
    class also meets each row with that probability, from one RNG seeded with `seed` (four draws per row, in row
    order), so the same journal and the same faults give the same file. A missing row meets nothing else; an
    amount change adds 1–99 minor units to the amount's size (never making it 0); a status change makes a success
    `failed` (a paid payout `returned`, a returned one `success`; a won dispute lost, a lost one won, an opened one
    as it is); a duplicate follows its row, identical. Extra
    rows (`extra`, plus `rate` × the number of rows) come last.
    """
    applied: dict[str, list[str]] = {"missing": [], "amount": [], "status": [], "duplicate": [], "extra": []}
    if faults is None or faults.empty:
        return list(rows), applied
    rng = random.Random(faults.seed)  # noqa: S311 - reproducible test data, not secrets
    rate = faults.rate
    missing, amount, status, duplicate = (set(faults.missing), set(faults.amount), set(faults.status),
                                          set(faults.duplicate))  # fmt: skip
    out: list[Row] = []
    for row in rows:
        key = row.fault_key
        if rate:
            u_missing, u_amount, u_status, u_duplicate = rng.random(), rng.random(), rng.random(), rng.random()
        else:
            u_missing = u_amount = u_status = u_duplicate = 1.0
        if key in missing or u_missing < rate:
            applied["missing"].append(key)
            continue
        if key in amount or u_amount < rate:
            step = rng.randint(1, 99)
            row = row._replace(amount=row.amount + (step if row.amount >= 0 else -step))
            applied["amount"].append(key)
        if key in status or u_status < rate:
            row = _flipped(row)
            applied["status"].append(key)
        out.append(row)
        if key in duplicate or u_duplicate < rate:
            out.append(row)
            applied["duplicate"].append(key)
    extras = _extra_rows(faults, faults.extra + round(rate * len(rows)), channel, day, rng)
    out.extend(extras)
    applied["extra"] = [row.reference for row in extras]
    return out, applied


# ---- the fault store ---------------------------------------------------------------------------------------------


def save_faults(store: Store, faults: StatementFaults) -> None:
    """Replace the faults of (channel, date); faults that inject nothing are simply forgotten."""
    with store.write() as conn:
        conn.execute(
            "DELETE FROM statement_faults WHERE channel = ? AND business_date = ?", (faults.channel, faults.date)
        )
        if not faults.empty:
            conn.execute(
                "INSERT INTO statement_faults (channel, business_date, spec) VALUES (?, ?, ?)",
                (faults.channel, faults.date, json.dumps(faults.as_json())),
            )


def load_faults(store: Store, channel: str | None = None, day: str | None = None) -> list[StatementFaults]:
    clauses, params = ["1 = 1"], []
    if channel:
        clauses.append("channel = ?")
        params.append(channel)
    if day:
        clauses.append("business_date = ?")
        params.append(day)
    sql = f"SELECT spec FROM statement_faults WHERE {' AND '.join(clauses)} ORDER BY channel, business_date"  # noqa: S608
    return [parse_faults(json.loads(row["spec"])) for row in store.connection().execute(sql, params).fetchall()]


# ---- the writers -------------------------------------------------------------------------------------------------


def render(format: str, channel: str, day: date, rows: Iterable[Row]) -> str:
    """The statement text of `channel` for business date `day` in `format`, from its detail rows (as written)."""
    if format == "csv_v1":
        return render_csv_v1(channel, day, rows)
    if format == "csv_v2":
        return render_csv_v2(channel, day, rows)
    if format == "fixed_v1":
        return render_fixed_v1(channel, day, rows)
    raise ValueError(f"unknown statement format {format!r}")


class _LocalTimes:
    """Asia/Shanghai renderings of instants to the second (`iso`: `2026-03-02T10:00:00+08:00`, or `compact`:
    `20260302100000`, or `clock`: `100000`), cached per second: a day's rows share at most 86,400 of them."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.cache: dict[int, str] = {}

    def __call__(self, second: int) -> str:
        """The rendering of a Unix second (writers look in `cache` first and call this on a miss)."""
        text = self.cache.get(second)
        if text is None:
            local = datetime.fromtimestamp(second, LOCAL_TZ)
            if self.style == "iso":
                text = local.isoformat(timespec="seconds")
            elif self.style == "compact":
                text = f"{local:%Y%m%d%H%M%S}"
            else:
                text = f"{local:%H%M%S}"
            if len(self.cache) > 200_000:
                self.cache.clear()
            self.cache[second] = text
        return text


def render_csv_v1(channel: str, day: date, rows: Iterable[Row]) -> str:
    """Comma-separated, `\\n` line ends: a header, a `D` row per movement, a `T` row per currency (sorted) totalling
    the acquiring rows that moved money (captures, refunds, reversals, lost chargebacks and error adjustments: payouts
    and the other dispute rows are listed but not in the totals). The values need no
    quoting: ids, references, currencies and dates never hold a comma or a quote."""
    prefix = f",{day.isoformat()},{channel},"
    times = _LocalTimes("iso")
    cache = times.cache
    lines = [",".join(COLUMNS)]
    append = lines.append
    totals: dict[str, list[int]] = {}
    for seq, at, kind, txn_id, reference, operation_reference, _original, currency, amount, fee, status in rows:
        second = int(at.timestamp())
        append(
            f"D,{seq},{cache.get(second) or times(second)}{prefix}{kind},{txn_id},{reference},"
            f"{operation_reference if kind == 'refund' else ''},{currency},{amount},{fee},{amount - fee},{status}"
        )
        if moves_money(kind, status):
            total = totals.get(currency)
            if total is None:
                total = totals[currency] = [0, 0, 0]
            total[0] += 1
            total[1] += amount
            total[2] += fee
    for currency, (count, amount, fee) in sorted(totals.items()):
        append(f"T,{count},{prefix}total,,,,{currency},{amount},{fee},{amount - fee},")
    lines.append("")
    return "\n".join(lines)


def major(amount: int, currency: str) -> str:
    """Signed minor units as major units with the currency's decimals: `-2500` CNY → `-25.00`, `1200` JPY → `1200`."""
    exponent = CURRENCY_EXPONENT[currency]
    if not exponent:
        return str(amount)
    units, cents = divmod(abs(amount), 10**exponent)
    return f"{'-' if amount < 0 else ''}{units}.{cents:0{exponent}d}"


def render_csv_v2(channel: str, day: date, rows: Iterable[Row]) -> str:
    """The bank layout: UTF-8 with a BOM, `;`-separated, `\\r\\n` line ends, a Chinese header, no totals, signed
    amounts in major units."""
    compact_day = day.strftime("%Y%m%d")
    times = _LocalTimes("clock")
    cache = times.cache
    lines = ["\ufeff" + V2_HEADER]
    append = lines.append
    two_places = {currency for currency, exponent in CURRENCY_EXPONENT.items() if exponent == 2}
    for _seq, at, kind, txn_id, reference, operation_reference, original, currency, amount, fee, status in rows:
        second = int(at.timestamp())
        if currency in two_places:  # exact: a float holds n/100 within far less than half a cent for |n| < 10**15
            money = f"{amount / 100:.2f};{fee / 100:.2f}"
        else:
            money = f"{major(amount, currency)};{major(fee, currency)}"
        ours = operation_reference if kind == "refund" else reference
        append(
            f"{compact_day};{cache.get(second) or times(second)};{ours};{txn_id};{original};{V2_TYPES[kind]};"
            f"{currency};{money};{V2_STATUS[status]}"
        )
    lines.append("")
    return "\r\n".join(lines)


def render_fixed_v1(channel: str, day: date, rows: Iterable[Row]) -> str:
    """Fixed-width ASCII, `\\n` line ends, 160 characters a record: `H`eader, a `D`etail per row, a `T`railer with
    the number of details and the sum of their signed amounts (a dispute row's only when it moved money: a lost
    chargeback or error adjustment). A value longer than its field is cut (references
    have 40 columns, channel txn ids 32)."""
    if len(channel) > FIXED_CHANNEL_WIDTH:
        raise ValueError(f"a fixed_v1 statement has room for a channel id of {FIXED_CHANNEL_WIDTH} characters")
    times = _LocalTimes("compact")
    cache = times.cache
    lines = [f"H{channel:<20}{day:%Y%m%d}".ljust(FIXED_WIDTH)]
    append = lines.append
    count = total = 0
    tail = " " * 29
    for seq, at, kind, txn_id, reference, operation_reference, _original, currency, amount, fee, status in rows:
        if not -(10**15) < amount < 10**15 or not 0 <= fee < 10**12:
            raise ValueError(f"row {txn_id}: the amount or fee does not fit the fixed_v1 layout")
        count += 1
        if kind not in DISPUTE_TYPES or moves_money(kind, status):
            total += amount
        ours = operation_reference if kind == "refund" else reference
        second = int(at.timestamp())
        append(
            f"D{str(seq).zfill(10)}{cache.get(second) or times(second)}{FIXED_TYPES[kind]}{txn_id[:32].ljust(32)}"
            f"{ours[:40].ljust(40)}{currency}{'-' if amount < 0 else '+'}{str(abs(amount)).zfill(15)}"
            f"{str(fee).zfill(12)}{FIXED_STATUS[status]}{tail}"
        )
    append(f"T{count:010d}{'-' if total < 0 else '+'}{abs(total):017d}".ljust(FIXED_WIDTH))
    lines.append("")
    return "\n".join(lines)


# ---- assembled ---------------------------------------------------------------------------------------------------


@dataclass
class Statement:
    format: str
    text: str
    applied: dict[str, list[str]]


def build(
    store: Store,
    channel: Channel,
    day: date,
    now: datetime,
    *,
    format: str | None = None,
    faults: StatementFaults | None = None,
) -> Statement:
    """The channel's statement for `day`: its rows, the discrepancies of `faults` (default: those stored for the
    channel and date), in `format` (default: the channel's own)."""
    if faults is None:
        stored = load_faults(store, channel.id, day.isoformat())
        faults = stored[0] if stored else None
    fmt = format or channel.statement_format
    if fmt not in STATEMENT_FORMATS:
        raise ValueError(f"unknown statement format {fmt!r}")
    rows, applied = apply_faults(
        statement_rows(store, channel.id, day, now, cutoff=channel.cutoff), faults, channel, day
    )
    return Statement(fmt, render(fmt, channel.id, day, rows), applied)
