"""Channel statement files (对账单): the three layouts the channels write, read into rows, and written from rows.

Every layout names, per money movement: its type (capture, refund, reversal, payout), our reference (the payment's
for a capture or reversal, the refund's for a refund, the payout's for a payout), the channel's transaction id, for a
refund or reversal the original payment's channel id where the layout has it, the currency, the signed amount in
minor units (refunds and reversals negative), the channel's fee, the status (success, failed, returned) and the
time. See docs/reconciliation.md for the layouts column by column.

Reading is done by PostgreSQL: the file goes by COPY, as it is, into a staging table of the import's own (a
`Layout`'s raw columns and COPY options); one statement checks every line and types the rows in the same pass over
the staging table, a look at its result names the first line that cannot be read (`StatementError`), and one
reports totals that do not add up (warnings, kept on the import).
Half a million rows are read so in a couple of seconds, where a Python reader would take ten or more. `render`
writes a statement from `Row`s (demo statements, tests, the benchmark).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from core.calendar import SHANGHAI
from core.money import MINOR_UNIT_EXPONENT, exponent

KINDS = ("capture", "refund", "reversal", "payout")
STATUSES = ("success", "failed", "returned")
# Dispute rows: a dispute the channel opened that day, or decided (won or lost). Only a lost chargeback or error
# adjustment moved money: its amount is the debit, negative; every other dispute row lists the amount in dispute.
DISPUTE_KINDS = ("chargeback", "retrieval", "error_adjustment")
DISPUTE_STATUSES = ("opened", "won", "lost")

CSV_V1_HEADER = (
    "record,seq,txn_time,business_date,channel,type,txn_id,reference,operation_reference,currency,amount_minor,"
    "fee_minor,net_minor,status"
)
CSV_V2_HEADER = "交易日期;交易时间;商户订单号;渠道流水号;原交易流水号;交易类型;币种;交易金额;手续费;状态"
V2_KINDS = {
    "消费": "capture",
    "退货": "refund",
    "撤销": "reversal",
    "代付": "payout",
    "拒付": "chargeback",
    "调单": "retrieval",
    "差错": "error_adjustment",
}
V2_STATUSES = {"成功": "success", "失败": "failed", "退回": "returned", "受理": "opened", "胜诉": "won", "败诉": "lost"}
FIXED_KINDS = {
    "01": "capture",
    "02": "refund",
    "03": "reversal",
    "04": "payout",
    "CB": "chargeback",
    "RR": "retrieval",
    "EA": "error_adjustment",
}
FIXED_STATUSES = {"S": "success", "F": "failed", "R": "returned", "O": "opened", "W": "won", "L": "lost"}


def moves_money(kind: str, status: str) -> bool:
    """Whether a row is money the acquiring side moved, as a statement's totals count it: a capture, refund or
    reversal, or a lost chargeback or error adjustment (never a payout, a dispute opened or won, or a retrieval)."""
    if kind in DISPUTE_KINDS:
        return status == "lost" and kind != "retrieval"
    return kind != "payout"


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


# --- reading (in PostgreSQL) ---------------------------------------------------------------------------------------
#
# Each layout: the raw staging table's columns (text, as COPY reads them; a `line` column numbers the file's lines),
# the COPY options, `problem` (an SQL expression over one raw row `r`: NULL when it reads, else what is wrong with
# it), `detail` (the row is a money movement, not a header or a total), `typed` (the typed row's expressions, in the
# order of TYPED_COLUMNS, evaluated only on a detail row that reads) and `totals` (what the file states against what
# its typed rows, `recon_rows`, add up to, where they differ: warnings). %(day)s is the statement's date in ISO form,
# %(compact)s as YYYYMMDD; {raw} stands for the staging table (replaced as text: no other braces are formatted).

TYPED_COLUMNS = ("kind", "ref", "txn", "orig", "currency", "amount", "fee", "status", "at")


def _whole(column: str) -> str:
    """SQL: `column` is not a whole number of at most 15 digits (with a minus sign or none). `translate` rather than a
    regular expression: half a million rows are checked, and it is several times faster."""
    digits = f"ltrim({column}, '-')"
    return (
        f"({column} IS NULL OR length({digits}) NOT BETWEEN 1 AND 15 OR length({column}) > length({digits}) + 1"
        f" OR translate({digits}, '0123456789', '') <> '')"
    )


def _decimal(column: str) -> str:
    """SQL: `column` is not a decimal number (a minus sign or none, digits, a point and up to four decimals)."""
    unsigned = f"ltrim({column}, '-')"
    return (
        f"({column} IS NULL OR {unsigned} = '' OR length({column}) > length({unsigned}) + 1 OR length({column}) > 20"
        f" OR translate({unsigned}, '0123456789', '') NOT IN ('', '.') OR {unsigned} LIKE '.%%'"
        f" OR {unsigned} LIKE '%%.')"
    )


def _per_currency(column: str, values: dict[str, int]) -> str:
    """SQL: the value of `column`'s currency (an integer), from a CASE over the known currencies (no join per row)."""
    return f"CASE {column} " + " ".join(f"WHEN '{code}' THEN {value}" for code, value in values.items()) + " END"


_CODES = "(" + ", ".join(f"'{code}'" for code in MINOR_UNIT_EXPONENT) + ")"
_EXPONENT = _per_currency("r.currency", MINOR_UNIT_EXPONENT)
# Major to minor units as an exact numeric product (10 ^ n would be a float).
_MINOR = _per_currency("r.currency", {code: 10**exp for code, exp in MINOR_UNIT_EXPONENT.items()})
_LOCAL = "::timestamp AT TIME ZONE 'Asia/Shanghai'"
DISPUTE_KINDS_SQL = "(" + ", ".join(f"'{kind}'" for kind in DISPUTE_KINDS) + ")"


def _sign_problem(dispute: str, lost: str, retrieval: str, negative: str, zero: str, debit: str) -> str:
    """SQL: the row's amount has the wrong sign. A dispute row (`dispute`) is negative exactly when it is a lost
    chargeback or error adjustment (`lost` and not `retrieval`), and only a retrieval's may be 0; any other row is
    negative exactly when it is a refund or reversal (`debit`), and never 0."""
    return (
        f"CASE WHEN {dispute} THEN ({negative}) <> ({lost} AND NOT {retrieval}) OR ({zero} AND NOT {retrieval})"
        f" ELSE ({negative}) <> ({debit}) OR {zero} END"
    )


@dataclass(frozen=True)
class Layout:
    header: str  # what the first line must be ("" for none)
    columns: tuple[str, ...]
    copy_options: str
    problem: str
    detail: str
    typed: tuple[str, ...]
    totals: str = ""


LAYOUTS: dict[str, Layout] = {
    "csv_v1": Layout(
        header=CSV_V1_HEADER,
        columns=(
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
            "amount",
            "fee",
            "net",
            "status",
        ),
        copy_options="FORMAT csv, HEADER true",
        problem=f"""CASE
          WHEN r.record IS NULL OR r.record NOT IN ('D', 'T') THEN 'unknown record ' || COALESCE(r.record, '')
          WHEN r.business_date IS DISTINCT FROM %(day)s
               THEN 'business date ' || COALESCE(r.business_date, '') || ' is not the statement''s ' || %(day)s
          WHEN r.currency IS NULL OR r.currency NOT IN {_CODES} THEN 'unknown currency ' || COALESCE(r.currency, '')
          WHEN {_whole("r.amount")} THEN 'amount is not a whole number'
          WHEN r.record = 'T' THEN CASE WHEN {_whole("r.seq")} OR r.seq LIKE '-%%' THEN 'count is not a number' END
          WHEN r.type IS NULL
               OR r.type NOT IN ('capture', 'refund', 'reversal', 'payout', 'chargeback', 'retrieval',
                                 'error_adjustment')
               THEN 'unknown type ' || COALESCE(r.type, '')
          WHEN r.status IS NULL OR r.status NOT IN ('success', 'failed', 'returned', 'opened', 'won', 'lost')
               OR (r.type IN {DISPUTE_KINDS_SQL}) <> (r.status IN ('opened', 'won', 'lost'))
               THEN 'unknown status ' || COALESCE(r.status, '') || ' of a ' || r.type
          WHEN {_whole("COALESCE(r.fee, '0')")} THEN 'fee is not a whole number'
          WHEN {
            _sign_problem(
                f"r.type IN {DISPUTE_KINDS_SQL}",
                "r.status = 'lost'",
                "r.type = 'retrieval'",
                "r.amount::bigint < 0",
                "r.amount::bigint = 0",
                "r.type IN ('refund', 'reversal')",
            )
        }
               THEN 'a ' || r.type || ' of ' || r.amount || ' has the wrong sign'
          WHEN r.txn_time IS NOT NULL AND translate(r.txn_time, '0123456789', '')
               NOT IN ('--T::', '--T::Z', '--T::+:', '--T::-:', '--T::+', '--T::-')
               THEN 'time ' || r.txn_time || ' is not ISO 8601'
          WHEN length(COALESCE(r.txn_id, '')) > 64 OR length(COALESCE(r.reference, '')) > 64
               OR length(COALESCE(r.operation_reference, '')) > 64 THEN 'a reference longer than 64 characters'
        END""",
        detail="r.record = 'D'",
        typed=(
            "r.type",
            "CASE WHEN r.type = 'refund' THEN r.operation_reference"
            " ELSE COALESCE(NULLIF(r.reference, ''), r.operation_reference) END",
            "r.txn_id",
            "NULL::text",
            "r.currency",
            "r.amount::bigint",
            "COALESCE(r.fee, '0')::bigint",
            "r.status",
            "r.txn_time::timestamptz",
        ),
        # The T rows are the acquiring totals, of the rows as written (copies too) that moved money: payouts and the
        # dispute rows that moved none (opened, won, retrievals) are listed, not added up.
        totals="""SELECT 'total ' || t.currency, t.seq::bigint, t.amount::bigint, COALESCE(d.count, 0),
                         COALESCE(d.total, 0)
                  FROM {raw} t
                  LEFT JOIN (SELECT currency, count(*) AS count, sum(amount) AS total FROM recon_rows
                             WHERE kind IN ('capture', 'refund', 'reversal')
                                OR (kind IN ('chargeback', 'error_adjustment') AND status = 'lost')
                             GROUP BY currency) d ON d.currency = t.currency
                  WHERE t.record = 'T'
                    AND (t.seq::bigint, t.amount::bigint) <> (COALESCE(d.count, 0), COALESCE(d.total, 0))""",
    ),
    "csv_v2": Layout(
        header=CSV_V2_HEADER,
        columns=("date", "time", "reference", "txn_id", "original", "type", "currency", "amount", "fee", "status"),
        copy_options="FORMAT csv, HEADER true, DELIMITER ';'",
        problem=f"""CASE
          WHEN r.date IS DISTINCT FROM %(compact)s
               THEN 'business date ' || COALESCE(r.date, '') || ' is not the statement''s ' || %(compact)s
          WHEN r.time IS NULL OR length(r.time) <> 6 OR translate(r.time, '0123456789', '') <> ''
               THEN 'time is not HHMMSS'
          WHEN r.type IS NULL OR r.type NOT IN ('消费', '退货', '撤销', '代付', '拒付', '调单', '差错')
               THEN 'unknown type ' || COALESCE(r.type, '')
          WHEN r.status IS NULL OR r.status NOT IN ('成功', '失败', '退回', '受理', '胜诉', '败诉')
               OR (r.type IN ('拒付', '调单', '差错')) <> (r.status IN ('受理', '胜诉', '败诉'))
               THEN 'unknown status ' || COALESCE(r.status, '') || ' of a ' || r.type
          WHEN r.currency IS NULL OR r.currency NOT IN {_CODES} THEN 'unknown currency ' || COALESCE(r.currency, '')
          WHEN {_decimal("r.amount")} THEN 'amount is not a number'
          WHEN {_decimal("COALESCE(r.fee, '0')")} THEN 'fee is not a number'
          WHEN greatest(scale(r.amount::numeric), scale(COALESCE(r.fee, '0')::numeric)) > {_EXPONENT}
               THEN r.amount || ' has more decimals than ' || r.currency || ' has'
          WHEN {
            _sign_problem(
                "r.type IN ('拒付', '调单', '差错')",
                "r.status = '败诉'",
                "r.type = '调单'",
                "r.amount::numeric < 0",
                "r.amount::numeric = 0",
                "r.type IN ('退货', '撤销')",
            )
        }
               THEN 'a ' || r.type || ' of ' || r.amount || ' has the wrong sign'
          WHEN length(COALESCE(r.txn_id, '')) > 64 OR length(COALESCE(r.reference, '')) > 64
               OR length(COALESCE(r.original, '')) > 64 THEN 'a reference longer than 64 characters'
        END""",
        detail="true",
        typed=(
            "CASE r.type WHEN '消费' THEN 'capture' WHEN '退货' THEN 'refund' WHEN '撤销' THEN 'reversal'"
            " WHEN '拒付' THEN 'chargeback' WHEN '调单' THEN 'retrieval' WHEN '差错' THEN 'error_adjustment'"
            " ELSE 'payout' END",
            "r.reference",
            "r.txn_id",
            "r.original",
            "r.currency",
            f"(r.amount::numeric * {_MINOR})::bigint",
            f"(COALESCE(r.fee, '0')::numeric * {_MINOR})::bigint",
            "CASE r.status WHEN '成功' THEN 'success' WHEN '失败' THEN 'failed' WHEN '退回' THEN 'returned'"
            " WHEN '受理' THEN 'opened' WHEN '胜诉' THEN 'won' ELSE 'lost' END",
            # A time of day within the business date, which runs from the cut-off the day before: after the cut-off
            # the date is the next day's, so the moment is `opens` plus the time since the cut-off's time of day.
            "(%(opens)s::timestamp + ((extract(epoch FROM to_timestamp(r.time, 'HH24MISS')::time"
            f" - %(opens)s::timestamp::time)::int + 86400) %% 86400) * interval '1 second'){_LOCAL}",
        ),
    ),
    "fixed_v1": Layout(
        header="",
        columns=("rec",),
        # Each line whole, as one field: no delimiter or quote a fixed-width ASCII record can hold.
        copy_options="FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'",
        problem=f"""CASE
          WHEN r.rec IS NULL THEN NULL
          WHEN length(r.rec) <> {RECORD_WIDTH} THEN length(r.rec) || ' characters, {RECORD_WIDTH} expected'
          WHEN substr(r.rec, 1, 1) = 'H' THEN CASE
               WHEN r.line <> 1 THEN 'a header record after the first line'
               WHEN substr(r.rec, 22, 8) <> %(compact)s
                    THEN 'business date ' || substr(r.rec, 22, 8) || ' is not ' || %(compact)s END
          WHEN r.line = 1 THEN 'a record before the header'
          WHEN substr(r.rec, 1, 1) = 'T' THEN CASE
               WHEN translate(substr(r.rec, 2, 10) || substr(r.rec, 13, 17), '0123456789', '') <> ''
                    OR substr(r.rec, 12, 1) NOT IN ('+', '-') THEN 'trailer count or sum is not a number' END
          WHEN substr(r.rec, 1, 1) <> 'D' THEN 'unknown record ' || substr(r.rec, 1, 1)
          WHEN substr(r.rec, 26, 2) NOT IN ('01', '02', '03', '04', 'CB', 'RR', 'EA')
               THEN 'unknown type ' || substr(r.rec, 26, 2)
          WHEN substr(r.rec, 103, 1) NOT IN ('+', '-') THEN 'sign is not + or -'
          WHEN substr(r.rec, 131, 1) NOT IN ('S', 'F', 'R', 'O', 'W', 'L')
               OR (substr(r.rec, 26, 2) IN ('CB', 'RR', 'EA')) <> (substr(r.rec, 131, 1) IN ('O', 'W', 'L'))
               THEN 'unknown status ' || substr(r.rec, 131, 1) || ' of type ' || substr(r.rec, 26, 2)
          WHEN substr(r.rec, 100, 3) NOT IN {_CODES} THEN 'unknown currency ' || substr(r.rec, 100, 3)
          WHEN translate(substr(r.rec, 104, 27), '0123456789', '') <> '' THEN 'amount or fee is not a number'
          WHEN translate(substr(r.rec, 12, 14), '0123456789', '') <> '' THEN 'time is not YYYYMMDDHHMMSS'
          WHEN {
            _sign_problem(
                "substr(r.rec, 26, 2) IN ('CB', 'RR', 'EA')",
                "substr(r.rec, 131, 1) = 'L'",
                "substr(r.rec, 26, 2) = 'RR'",
                "substr(r.rec, 103, 1) = '-'",
                "substr(r.rec, 104, 15)::bigint = 0",
                "substr(r.rec, 26, 2) IN ('02', '03')",
            )
        }
               THEN 'the amount has the wrong sign'
        END""",
        detail="substr(r.rec, 1, 1) = 'D'",
        typed=(
            "CASE substr(r.rec, 26, 2) WHEN '01' THEN 'capture' WHEN '02' THEN 'refund' WHEN '03' THEN 'reversal'"
            " WHEN '04' THEN 'payout' WHEN 'CB' THEN 'chargeback' WHEN 'RR' THEN 'retrieval'"
            " ELSE 'error_adjustment' END",
            "rtrim(substr(r.rec, 60, 40))",
            "rtrim(substr(r.rec, 28, 32))",
            "NULL::text",
            "substr(r.rec, 100, 3)",
            "CASE substr(r.rec, 103, 1) WHEN '-' THEN -1 ELSE 1 END * substr(r.rec, 104, 15)::bigint",
            "substr(r.rec, 119, 12)::bigint",
            "CASE substr(r.rec, 131, 1) WHEN 'S' THEN 'success' WHEN 'F' THEN 'failed' WHEN 'R' THEN 'returned'"
            " WHEN 'O' THEN 'opened' WHEN 'W' THEN 'won' ELSE 'lost' END",
            f"to_timestamp(substr(r.rec, 12, 14), 'YYYYMMDDHH24MISS'){_LOCAL}",
        ),
        # The trailer counts every detail record as written (payouts and copies too) and adds up their amounts, a
        # dispute row's only when it moved money (a lost chargeback or error adjustment).
        totals="""SELECT 'trailer', t.count, t.total, d.count, d.total
                  FROM (SELECT substr(rec, 2, 10)::bigint AS count, substr(rec, 12, 18)::bigint AS total
                        FROM {raw} WHERE substr(rec, 1, 1) = 'T') t
                  CROSS JOIN (SELECT count(*) AS count,
                                     COALESCE(sum(amount) FILTER (WHERE kind NOT IN ('chargeback', 'retrieval',
                                       'error_adjustment') OR (kind <> 'retrieval' AND status = 'lost')), 0) AS total
                              FROM recon_rows) d
                  WHERE (t.count, t.total) <> (d.count, d.total)""",
    ),
}


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
        if not moves_money(row.kind, row.status):
            continue  # the T rows are the acquiring totals: payouts and dispute rows without money are not added up
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
        if row.kind not in DISPUTE_KINDS or moves_money(row.kind, row.status):
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
