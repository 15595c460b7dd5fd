"""Channel statement files (对账单): the three layouts the channels write, read into rows, and written from rows.

Every layout names, per money movement: its type (capture, refund, reversal, payout), our reference (the payment's
for a capture or reversal, the refund's for a refund, the payout's for a payout), the channel's transaction id, for a
refund or reversal the original payment's channel id where the layout has it, the currency, the signed amount in
minor units (refunds and reversals negative), the channel's fee, the status (success, failed, returned) and the
time. See docs/reconciliation.md for the layouts column by column.

Parsing streams: `parse` yields `Row`s as it reads, so that a 500,000-row file goes into PostgreSQL by COPY without
being held as objects. A line that cannot be read raises `StatementError` (with its line number); totals that do not
add up are warnings (`Parsed.warnings`), kept on the import.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from core.calendar import SHANGHAI
from core.money import MINOR_UNIT_EXPONENT, exponent

KINDS = ("capture", "refund", "reversal", "payout")
STATUSES = ("success", "failed", "returned")

CSV_V1_HEADER = (
    "record,seq,txn_time,business_date,channel,type,txn_id,reference,operation_reference,currency,amount_minor,"
    "fee_minor,net_minor,status"
)
CSV_V2_HEADER = "交易日期;交易时间;商户订单号;渠道流水号;原交易流水号;交易类型;币种;交易金额;手续费;状态"
V2_KINDS = {"消费": "capture", "退货": "refund", "撤销": "reversal", "代付": "payout"}
V2_STATUSES = {"成功": "success", "失败": "failed", "退回": "returned"}
FIXED_KINDS = {"01": "capture", "02": "refund", "03": "reversal", "04": "payout"}
FIXED_STATUSES = {"S": "success", "F": "failed", "R": "returned"}
RECORD_WIDTH = 160


class StatementError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class Row(NamedTuple):
    kind: str
    reference: str
    channel_txn_id: str
    original_txn_id: str
    currency: str
    amount: int  # signed minor units
    fee: int
    status: str
    txn_at: dt.datetime | None
    line: int = 0


@dataclass
class Parsed:
    """A statement being read: `rows` is consumed once; `warnings` fills as it is."""

    format: str
    business_date: dt.date
    rows: Iterator[Row]
    warnings: list[str] = field(default_factory=list)


def parse(text: str, fmt: str, business_date: dt.date) -> Parsed:
    """The rows of a statement of `business_date` in layout `fmt` (rows of another date are an error)."""
    readers = {"csv_v1": _csv_v1, "csv_v2": _csv_v2, "fixed_v1": _fixed_v1}
    if fmt not in readers:
        raise StatementError(0, f"unknown statement format {fmt!r}")
    parsed = Parsed(fmt, business_date, iter(()))
    parsed.rows = readers[fmt](text, business_date, parsed.warnings)
    return parsed


# --- reading ------------------------------------------------------------------------------------------------------


def _check(condition: bool, line: int, message: str) -> None:
    if not condition:
        raise StatementError(line, message)


def _integer(value: str, line: int, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StatementError(line, f"{name} {value!r} is not a whole number") from None


def _currency(value: str, line: int) -> str:
    _check(value in MINOR_UNIT_EXPONENT, line, f"unknown currency {value!r}")
    return value


def _kind(value: str, line: int) -> str:
    _check(value in KINDS, line, f"unknown type {value!r}")
    return value


def _signed(kind: str, amount: int, line: int) -> int:
    """Refunds and reversals are negative, captures and payouts positive."""
    negative = kind in ("refund", "reversal")
    _check(amount != 0 and (amount < 0) == negative, line, f"a {kind} of {amount} has the wrong sign")
    return amount


def _csv_v1(text: str, day: dt.date, warnings: list[str]) -> Iterator[Row]:
    lines = io.StringIO(text.lstrip("\ufeff"))
    reader = csv.reader(lines)
    header = next(reader, None)
    _check(header is not None and ",".join(header) == CSV_V1_HEADER, 1, "not a csv_v1 header")
    totals: dict[str, list[int]] = {}
    stated: dict[str, tuple[int, int]] = {}
    for number, record in enumerate(reader, start=2):
        if not record:
            continue
        _check(len(record) == 14, number, f"{len(record)} columns, 14 expected")
        (kind_, _seq, txn_time, date_, _channel, type_, txn_id, reference, operation, currency, amount, fee, _net,
         status) = record  # fmt: skip
        _check(date_ == day.isoformat(), number, f"business date {date_} is not the statement's {day}")
        currency = _currency(currency, number)
        if kind_ == "T":
            stated[currency] = (_integer(_seq, number, "count"), _integer(amount, number, "amount"))
            continue
        _check(kind_ == "D", number, f"unknown record {kind_!r}")
        kind = _kind(type_, number)
        _check(status in STATUSES, number, f"unknown status {status!r}")
        signed = _signed(kind, _integer(amount, number, "amount"), number)
        try:
            at = dt.datetime.fromisoformat(txn_time) if txn_time else None
        except ValueError:
            raise StatementError(number, f"time {txn_time!r} is not ISO 8601") from None
        running = totals.setdefault(currency, [0, 0])
        running[0] += 1
        running[1] += signed
        # A refund's own reference is its operation reference; the payment's stands in the reference column.
        ours = operation if kind == "refund" else (reference or operation)
        yield Row(kind, ours, txn_id, "", currency, signed, _integer(fee or "0", number, "fee"), status, at, number)
    for currency, (count, amount) in sorted(stated.items()):
        if totals.get(currency, [0, 0]) != [count, amount]:
            warnings.append(f"total row for {currency} says {count} rows, {amount}; the rows add up to "
                            f"{totals.get(currency, [0, 0])[0]} rows, {totals.get(currency, [0, 0])[1]}")  # fmt: skip


def _major_to_minor(value: str, currency: str, line: int) -> int:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise StatementError(line, f"amount {value!r} is not a number") from None
    scaled = amount.scaleb(exponent(currency))
    _check(scaled == scaled.to_integral_value(), line, f"{value} has more decimals than {currency} has")
    return int(scaled)


def _local(date_: str, time_: str, line: int) -> dt.datetime:
    try:
        return dt.datetime.strptime(date_ + time_, "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)
    except ValueError:
        raise StatementError(line, f"time {date_} {time_} is not YYYYMMDD HHMMSS") from None


def _csv_v2(text: str, day: dt.date, warnings: list[str]) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=";")
    header = next(reader, None)
    _check(header is not None and ";".join(header) == CSV_V2_HEADER, 1, "not a csv_v2 header")
    compact = day.strftime("%Y%m%d")
    for number, record in enumerate(reader, start=2):
        if not record:
            continue
        _check(len(record) == 10, number, f"{len(record)} columns, 10 expected")
        date_, time_, reference, txn_id, original, type_, currency, amount, fee, status = record
        _check(date_ == compact, number, f"business date {date_} is not the statement's {compact}")
        _check(type_ in V2_KINDS, number, f"unknown type {type_!r}")
        _check(status in V2_STATUSES, number, f"unknown status {status!r}")
        kind = V2_KINDS[type_]
        currency = _currency(currency, number)
        signed = _signed(kind, _major_to_minor(amount, currency, number), number)
        fee_minor = _major_to_minor(fee or "0", currency, number)
        at = _local(date_, time_, number)
        yield Row(kind, reference, txn_id, original, currency, signed, fee_minor, V2_STATUSES[status], at, number)


def _fixed_v1(text: str, day: dt.date, warnings: list[str]) -> Iterator[Row]:
    count = total = 0
    trailer: tuple[int, int] | None = None
    header_seen = False
    for number, raw in enumerate(text.split("\n"), start=1):
        record = raw.rstrip("\r")
        if not record:
            continue
        _check(len(record) == RECORD_WIDTH, number, f"{len(record)} characters, {RECORD_WIDTH} expected")
        _check(trailer is None, number, "a record after the trailer")
        tag = record[0]
        if tag == "H":
            _check(not header_seen, number, "a second header")
            header_seen = True
            _check(record[21:29] == day.strftime("%Y%m%d"), number, f"business date {record[21:29]} is not {day}")
            continue
        _check(header_seen, number, "a record before the header")
        if tag == "T":
            sign, digits = record[11], record[12:29]
            _check(sign in "+-" and digits.isdigit(), number, "trailer sum is not a sign and 17 digits")
            trailer = (_integer(record[1:11], number, "count"), int(digits) * (-1 if sign == "-" else 1))
            continue
        _check(tag == "D", number, f"unknown record {tag!r}")
        type_, sign, status = record[25:27], record[102], record[130]
        _check(type_ in FIXED_KINDS, number, f"unknown type {type_!r}")
        _check(sign in "+-", number, f"sign {sign!r} is not + or -")
        _check(status in FIXED_STATUSES, number, f"unknown status {status!r}")
        kind = FIXED_KINDS[type_]
        currency = _currency(record[99:102], number)
        amount = _integer(record[103:118], number, "amount") * (-1 if sign == "-" else 1)
        signed = _signed(kind, amount, number)
        try:
            at = dt.datetime.strptime(record[11:25], "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)
        except ValueError:
            raise StatementError(number, f"time {record[11:25]!r} is not YYYYMMDDHHMMSS") from None
        count += 1
        total += signed
        yield Row(
            kind,
            record[59:99].rstrip(),
            record[27:59].rstrip(),
            "",
            currency,
            signed,
            _integer(record[118:130], number, "fee"),
            FIXED_STATUSES[status],
            at,
            number,
        )
    _check(header_seen, 1, "no header record")
    if trailer is None:
        warnings.append("no trailer record")
    elif trailer != (count, total):
        warnings.append(f"trailer says {trailer[0]} records, {trailer[1]}; the records add up to {count}, {total}")


# --- writing (demo statements, tests, the benchmark) ----------------------------------------------------------------


def _major(amount: int, currency: str) -> str:
    places = exponent(currency)
    if places == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**places)
    return f"{sign}{whole}.{part:0{places}d}"


def render(fmt: str, channel: str, day: dt.date, rows: Iterable[Row]) -> str:
    """A statement in layout `fmt`, as the channel would write it (with totals and trailer)."""
    rows = list(rows)
    if fmt == "csv_v1":
        return _render_v1(channel, day, rows)
    if fmt == "csv_v2":
        return _render_v2(day, rows)
    if fmt == "fixed_v1":
        return _render_fixed(channel, day, rows)
    raise ValueError(fmt)


def _time(row: Row, day: dt.date) -> dt.datetime:
    return (row.txn_at or dt.datetime.combine(day, dt.time(12), tzinfo=SHANGHAI)).astimezone(SHANGHAI)


def _render_v1(channel: str, day: dt.date, rows: list[Row]) -> str:
    out = [CSV_V1_HEADER]
    totals: dict[str, list[int]] = {}
    for seq, row in enumerate(rows, start=1):
        # A refund's own reference goes in operation_reference; the reference column holds its payment's, which a
        # Row does not carry (its original id, when it has one, stands in).
        reference, operation = (row.original_txn_id, row.reference) if row.kind == "refund" else (row.reference, "")
        out.append(
            f"D,{seq},{_time(row, day).isoformat(timespec='seconds')},{day.isoformat()},{channel},{row.kind},"
            f"{row.channel_txn_id},{reference},{operation},{row.currency},{row.amount},{row.fee},"
            f"{row.amount - row.fee},{row.status}"
        )
        running = totals.setdefault(row.currency, [0, 0, 0])
        running[0] += 1
        running[1] += row.amount
        running[2] += row.fee
    for currency, (count, amount, fee) in sorted(totals.items()):
        out.append(f"T,{count},,{day.isoformat()},{channel},total,,,,{currency},{amount},{fee},{amount - fee},")
    return "\n".join(out) + "\n"


def _render_v2(day: dt.date, rows: list[Row]) -> str:
    kinds = {value: key for key, value in V2_KINDS.items()}
    statuses = {value: key for key, value in V2_STATUSES.items()}
    out = ["\ufeff" + CSV_V2_HEADER]
    for row in rows:
        at = _time(row, day)
        out.append(
            f"{day:%Y%m%d};{at:%H%M%S};{row.reference};{row.channel_txn_id};{row.original_txn_id};"
            f"{kinds[row.kind]};{row.currency};{_major(row.amount, row.currency)};{_major(row.fee, row.currency)};"
            f"{statuses[row.status]}"
        )
    return "\r\n".join(out) + "\r\n"


def _render_fixed(channel: str, day: dt.date, rows: list[Row]) -> str:
    kinds = {value: key for key, value in FIXED_KINDS.items()}
    statuses = {value: key for key, value in FIXED_STATUSES.items()}
    out = [f"H{channel:<20.20}{day:%Y%m%d}".ljust(RECORD_WIDTH)]
    total = 0
    for seq, row in enumerate(rows, start=1):
        total += row.amount
        sign = "-" if row.amount < 0 else "+"
        out.append(
            (
                f"D{seq:010d}{_time(row, day):%Y%m%d%H%M%S}{kinds[row.kind]}{row.channel_txn_id:<32.32}"
                f"{row.reference:<40.40}{row.currency}{sign}{abs(row.amount):015d}{row.fee:012d}"
                f"{statuses[row.status]}"
            ).ljust(RECORD_WIDTH)
        )
    out.append(f"T{len(rows):010d}{'-' if total < 0 else '+'}{abs(total):017d}".ljust(RECORD_WIDTH))
    return "\n".join(out) + "\n"
