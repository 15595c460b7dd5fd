"""A channel's daily statement: its money movements for one business date, as CSV, built from the journal."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

from .engine import LOCAL_TZ
from .store import Store

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
)
# Journal operations that move money, and their statement type.
TYPES = {"sale": "capture", "capture": "capture", "refund": "refund", "reverse": "reversal", "hold_capture": "capture"}


def statement_csv(store: Store, channel: str, day: date) -> str:
    rows = (
        store.connection()
        .execute(
            # A charged-then-timed-out sale moved money although its caller saw a 504: it belongs here too.
            "SELECT * FROM journal WHERE channel = ? AND business_date = ? AND money != 0 ORDER BY seq",
            (channel, day.isoformat()),
        )
        .fetchall()
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    totals: dict[str, list[int]] = {}
    for row in rows:
        at = datetime.fromisoformat(row["at"].replace("Z", "+00:00")).astimezone(LOCAL_TZ)
        net = row["money"] - row["fee"]
        writer.writerow(
            (
                "D",
                row["seq"],
                at.isoformat(timespec="seconds"),
                row["business_date"],
                row["channel"],
                TYPES[row["op"]],
                row["object_id"],
                row["reference"],
                row["op_reference"] or "",
                row["currency"],
                row["money"],
                row["fee"],
                net,
            )
        )
        total = totals.setdefault(row["currency"], [0, 0, 0, 0])
        total[0] += 1
        total[1] += row["money"]
        total[2] += row["fee"]
        total[3] += net
    for currency, (count, amount, fee, net) in sorted(totals.items()):
        writer.writerow(("T", count, "", day.isoformat(), channel, "total", "", "", "", currency, amount, fee, net))
    return out.getvalue()
