"""The revenue share's metrics and pool, each defined by one set-based SQL statement over a month, and read by a run
more cheaply: the four payment metrics in one statement, the exchanges from the month's clearing runs (the ledger by
the definitions for a day without one). Tests and the benchmark check the reading against the definitions.

Every statement here is quoted word for word in docs/revenue-share.md (a test compares them). A metric statement
returns one row per bank, `(bank_id, value)`; banks with nothing do not appear. The parameters:

- `start_date`, `end_date`: the month as a half-open range of business dates (the 1st of the month, the 1st of the
  next), for payments and refunds, which carry the business date their capture or refund was stamped with;
- `created_from`, `created_to`, `refunds_from`, `refunds_to`: the half-open ranges of the payments' `created_at` and
  the refunds' `intent_created_at` that can have a business date in the month (payments/windows.py: the capture and
  refund windows), so that PostgreSQL reads only those months' partitions;
- `start`, `end`: the same month as a half-open range of aware datetimes at midnight Asia/Shanghai, for what has no
  business date: vouchers (by the time they were issued) and ledger transactions (by the time they were posted).

Only live payments in CNY count (test-mode payments move no money; other currencies: see the pool).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection

from core.calendar import SHANGHAI
from core.partitions import refuse_archived
from payments.selectors import payments_created_for, refunds_created_for

# Value of the benefits a bank contributed (and funds: not a merchant's) that cardholders of other banks took in the
# month, in ten-thousandths of CNY: the voucher's cost, the CNY value of the points paid for it. A voucher counts when
# it was issued in the month and is issued, redeemed at the till or expired; a cancelled one never (its points went
# back). "Another bank's cardholder": the card the voucher was taken with was issued by a different bank.
BENEFITS_SQL = """
SELECT b.bank_id, SUM(v.cost_units) AS value
FROM rewards_voucher v
JOIN rewards_benefit b ON b.id = v.benefit_id
JOIN members_card c ON c.id = v.card_id
WHERE v.issued_at >= %(start)s AND v.issued_at < %(end)s
  AND v.state IN ('issued', 'redeemed', 'expired')
  AND b.funding_merchant_id IS NULL
  AND c.bank_id <> b.bank_id
GROUP BY b.bank_id
""".strip()

# Distinct cardholders with a captured live CNY payment of a business date in the month, counted for the payment's
# issuer (the bank of the card or account paid with). A cardholder who paid with cards of two banks counts at both.
# Distinct pairs first, then counted: a hash aggregate the server can run in parallel, where COUNT(DISTINCT) sorts.
ACTIVE_CARDHOLDERS_SQL = """
SELECT active.bank_id, COUNT(*) AS value
FROM (
  SELECT p.issuer_id AS bank_id, p.cardholder_id
  FROM payments_paymentintent p
  WHERE p.business_date >= %(start_date)s AND p.business_date < %(end_date)s
    AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
    AND p.status = 'succeeded' AND p.amount_captured > 0
    AND p.livemode AND p.currency = 'CNY'
    AND p.issuer_id IS NOT NULL
  GROUP BY p.issuer_id, p.cardholder_id
) AS active
GROUP BY active.bank_id
""".strip()

# Issuer volume in fen: what the bank's cards paid (captured, by the payment's business date) less what was refunded
# to them (succeeded refunds, by the refund's business date, whenever the payment was).
ISSUER_VOLUME_SQL = """
SELECT bank_id, SUM(amount) AS value
FROM (
  SELECT p.issuer_id AS bank_id, p.amount_captured AS amount
  FROM payments_paymentintent p
  WHERE p.business_date >= %(start_date)s AND p.business_date < %(end_date)s
    AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
    AND p.status = 'succeeded' AND p.amount_captured > 0
    AND p.livemode AND p.currency = 'CNY'
  UNION ALL
  SELECT p.issuer_id, -r.amount
  FROM payments_refund r
  JOIN payments_paymentintent p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
  WHERE r.business_date >= %(start_date)s AND r.business_date < %(end_date)s
    AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
    AND r.status = 'succeeded'
    AND p.livemode AND p.currency = 'CNY'
) AS moved
WHERE bank_id IS NOT NULL
GROUP BY bank_id
""".strip()

# Merchants the bank sponsors (its sponsor bank as it is at the run) that captured a live CNY payment in the month:
# the month's paying merchants first (a hash aggregate), then counted per sponsor.
MERCHANTS_SPONSORED_SQL = """
SELECT m.sponsor_bank_id AS bank_id, COUNT(*) AS value
FROM (
  SELECT p.merchant_id
  FROM payments_paymentintent p
  WHERE p.business_date >= %(start_date)s AND p.business_date < %(end_date)s
    AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
    AND p.status = 'succeeded' AND p.amount_captured > 0
    AND p.livemode AND p.currency = 'CNY'
  GROUP BY p.merchant_id
) AS paid
JOIN merchants_merchant m ON m.id = paid.merchant_id
GROUP BY m.sponsor_bank_id
""".strip()

# Volume of the merchants the bank sponsors, in fen: captured less refunded, dated as the issuer volume is.
SPONSORED_VOLUME_SQL = """
SELECT m.sponsor_bank_id AS bank_id, SUM(moved.amount) AS value
FROM (
  SELECT p.merchant_id, p.amount_captured AS amount
  FROM payments_paymentintent p
  WHERE p.business_date >= %(start_date)s AND p.business_date < %(end_date)s
    AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
    AND p.status = 'succeeded' AND p.amount_captured > 0
    AND p.livemode AND p.currency = 'CNY'
  UNION ALL
  SELECT p.merchant_id, -r.amount
  FROM payments_refund r
  JOIN payments_paymentintent p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
  WHERE r.business_date >= %(start_date)s AND r.business_date < %(end_date)s
    AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
    AND r.status = 'succeeded'
    AND p.livemode AND p.currency = 'CNY'
) AS moved
JOIN merchants_merchant m ON m.id = moved.merchant_id
GROUP BY m.sponsor_bank_id
""".strip()

# Points exchanged in, as the CNY value (ten-thousandths) credited to the bank's clearing account for exchanges into
# its programme posted in the month, net of what it handed back when exchanges were reversed in the month. In an
# exchange the receiving bank's clearing entry is the positive one (the paying bank's is negative); in the reversal
# of an exchange the receiving bank's is the negative one.
POINTS_EXCHANGED_IN_SQL = """
SELECT a.owner_id AS bank_id, SUM(e.amount) AS value
FROM rewards_entry e
JOIN rewards_account a ON a.id = e.account_id AND a.spread = e.spread
JOIN rewards_ledgertransaction t ON t.id = e.transaction_id AND t.created_at = e.created_at
LEFT JOIN rewards_ledgertransaction x ON x.id = t.reverses_id AND x.created_at = t.reverses_created_at
WHERE t.created_at >= %(start)s AND t.created_at < %(end)s AND e.created_at >= %(start)s AND e.created_at < %(end)s
  AND a.owner_kind = 'bank' AND a.purpose = 'clearing' AND a.unit = 'CNY'
  AND ((t.kind = 'exchange' AND e.amount > 0)
    OR (t.kind = 'reversal' AND x.kind = 'exchange' AND e.amount < 0))
GROUP BY a.owner_id
""".strip()

# The alliance's part of the payment fees, per currency, in hundredths of a minor unit (ten-thousandths of CNY):
# capture rows (and the hand-backs of a reversal, 撤销, which happens before the cut-off, so on the same business
# date) by the payment's business date; refund hand-backs (negative) by the refund's business date.
FEE_SHARE_SQL = """
SELECT currency, SUM(amount) AS amount
FROM (
  SELECT p.currency, f.amount
  FROM payments_feesplit f
  JOIN payments_paymentintent p ON p.id = f.payment_id AND p.created_at = f.payment_created_at
  WHERE f.party = 'alliance' AND f.refund_id IS NULL
    AND p.business_date >= %(start_date)s AND p.business_date < %(end_date)s
    AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
    AND f.payment_created_at >= %(created_from)s AND f.payment_created_at < %(created_to)s
  UNION ALL
  SELECT p.currency, f.amount
  FROM payments_feesplit f
  JOIN payments_refund r ON r.id = f.refund_id AND r.intent_created_at = f.payment_created_at
  JOIN payments_paymentintent p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
  WHERE f.party = 'alliance'
    AND r.business_date >= %(start_date)s AND r.business_date < %(end_date)s
    AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
    AND f.payment_created_at >= %(refunds_from)s AND f.payment_created_at < %(refunds_to)s
) AS fees
GROUP BY currency
""".strip()

# The exchange fees the alliance's fee account took in the month, net of what reversals handed back (ten-thousandths).
EXCHANGE_FEES_SQL = """
SELECT COALESCE(SUM(e.amount), 0) AS amount
FROM rewards_entry e
JOIN rewards_account a ON a.id = e.account_id AND a.spread = e.spread
JOIN rewards_ledgertransaction t ON t.id = e.transaction_id AND t.created_at = e.created_at
LEFT JOIN rewards_ledgertransaction x ON x.id = t.reverses_id AND x.created_at = t.reverses_created_at
WHERE t.created_at >= %(start)s AND t.created_at < %(end)s AND e.created_at >= %(start)s AND e.created_at < %(end)s
  AND a.owner_kind = 'alliance' AND a.purpose = 'fees' AND a.unit = 'CNY'
  AND (t.kind = 'exchange' OR (t.kind = 'reversal' AND x.kind = 'exchange'))
""".strip()

# The four payment metrics in one read of the month's payments (and refunds), equal to their four statements above:
# the month's captures and refunds, grouped once by issuer and cardholder and once by merchant (grouping sets, one
# scan). A group with a capture is an active cardholder (an issuer's) or a paying merchant (a sponsor's); captures less
# refunds over the groups are the volumes. One row per issuer, one per sponsor, the other two columns NULL.
PAYMENT_METRICS_SQL = """
WITH moved AS (
  SELECT p.issuer_id, p.cardholder_id, p.merchant_id, p.amount_captured AS amount, 1 AS paid
  FROM payments_paymentintent p
  WHERE p.business_date >= %(start_date)s AND p.business_date < %(end_date)s
    AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
    AND p.status = 'succeeded' AND p.amount_captured > 0
    AND p.livemode AND p.currency = 'CNY'
  UNION ALL
  SELECT p.issuer_id, p.cardholder_id, p.merchant_id, -r.amount, 0
  FROM payments_refund r
  JOIN payments_paymentintent p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
  WHERE r.business_date >= %(start_date)s AND r.business_date < %(end_date)s
    AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
    AND r.status = 'succeeded'
    AND p.livemode AND p.currency = 'CNY'
), grouped AS (
  SELECT GROUPING(merchant_id) AS by_issuer, issuer_id, merchant_id, MAX(paid) AS paid, SUM(amount) AS amount
  FROM moved
  GROUP BY GROUPING SETS ((issuer_id, cardholder_id), (merchant_id))
)
SELECT issuer_id AS bank_id,
       COUNT(*) FILTER (WHERE paid = 1) AS active_cardholders, SUM(amount) AS issuer_volume,
       NULL AS merchants_sponsored, NULL AS sponsored_volume
FROM grouped
WHERE by_issuer = 1 AND issuer_id IS NOT NULL
GROUP BY issuer_id
UNION ALL
SELECT m.sponsor_bank_id, NULL, NULL, COUNT(*) FILTER (WHERE g.paid = 1), SUM(g.amount)
FROM grouped g
JOIN merchants_merchant m ON m.id = g.merchant_id
WHERE g.by_issuer = 0
GROUP BY m.sponsor_bank_id
""".strip()
PAYMENT_METRICS = ("active_cardholders", "issuer_volume", "merchants_sponsored", "sponsored_volume")

# The month's exchanges as the clearing runs netted them (each business day's CNY run that has netted): per party,
# what exchanges brought in, the exchange fees, and the exchanges' reversals. A bank's points exchanged in are its
# `exchange_in` less what it paid back in reversals (`exchange_reversal` payable); the alliance's (bank NULL) exchange
# fees are its `exchange_fee` plus its `exchange_reversal` (negative). `CLEARED_DAYS_SQL`: the days so read.
EXCHANGES_CLEARED_SQL = """
SELECT c.bank_id, c.kind, SUM(c.amount) AS amount, SUM(c.payable) AS payable
FROM alliance_clearingcomponent c
JOIN alliance_clearingrun r ON r.id = c.run_id
WHERE r.business_day >= %(start_date)s AND r.business_day < %(end_date)s
  AND r.currency = 'CNY' AND r.status <> 'computing'
  AND c.merchant_id IS NULL
  AND c.kind IN ('exchange_in', 'exchange_fee', 'exchange_reversal')
GROUP BY c.bank_id, c.kind
""".strip()

CLEARED_DAYS_SQL = """
SELECT r.business_day
FROM alliance_clearingrun r
WHERE r.business_day >= %(start_date)s AND r.business_day < %(end_date)s
  AND r.currency = 'CNY' AND r.status <> 'computing'
""".strip()

METRIC_SQL: dict[str, str] = {
    "benefits": BENEFITS_SQL,
    "active_cardholders": ACTIVE_CARDHOLDERS_SQL,
    "issuer_volume": ISSUER_VOLUME_SQL,
    "merchants_sponsored": MERCHANTS_SPONSORED_SQL,
    "sponsored_volume": SPONSORED_VOLUME_SQL,
    "points_exchanged_in": POINTS_EXCHANGED_IN_SQL,
}
# Every statement a test checks against the document, by the heading it is quoted under.
ALL_SQL: dict[str, str] = {
    **METRIC_SQL,
    "fee_share": FEE_SHARE_SQL,
    "exchange_fees": EXCHANGE_FEES_SQL,
    "payment_metrics": PAYMENT_METRICS_SQL,
    "exchanges_cleared": EXCHANGES_CLEARED_SQL,
    "cleared_days": CLEARED_DAYS_SQL,
}


@dataclass(frozen=True)
class MonthRange:
    month: dt.date  # the 1st of the month

    @property
    def end_month(self) -> dt.date:
        return (self.month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

    def params(self) -> dict[str, Any]:
        end = self.end_month
        last_day = end - dt.timedelta(days=1)
        created_from, created_to = payments_created_for(self.month, last_day)
        refunds_from, refunds_to = refunds_created_for(self.month, last_day)
        return {
            "start_date": self.month,
            "end_date": end,
            "created_from": created_from,
            "created_to": created_to,
            "refunds_from": refunds_from,
            "refunds_to": refunds_to,
            "start": dt.datetime.combine(self.month, dt.time(0), tzinfo=SHANGHAI),
            "end": dt.datetime.combine(end, dt.time(0), tzinfo=SHANGHAI),
        }

    def refuse_archived(self) -> None:
        """Refuses the month (`PeriodArchived`) when a month of a table its metrics read, in the window they read it,
        was archived: the payments and fee splits in the capture window, the refunds in the refund window, the
        ledger's entries and transactions of the month."""
        p = self.params()
        for tables, start, end in (
            (["payments_paymentintent", "payments_feesplit"], p["created_from"], p["created_to"]),
            (["payments_refund", "payments_feesplit"], p["refunds_from"], p["refunds_to"]),
            (["rewards_entry", "rewards_ledgertransaction"], p["start"], p["end"]),
        ):
            refuse_archived(tables, start, end, param="month")


# Memory for the statements' hash aggregates and joins (a month of a million payments groups a few hundred thousand
# cardholders): set for the run's transaction only, so that they do not spill to disk.
WORK_MEM = "64MB"


def tune_transaction() -> None:
    """Gives the current transaction the statements' working memory (`SET LOCAL`: it ends with the transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [WORK_MEM])


def _rows(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def metric_values(month: dt.date, exchanged: Exchanges | None = None) -> dict[str, dict[int, int]]:
    """metric → bank id → value, for the month: the benefits by their statement, the four payment metrics by one
    read of the month's payments, points exchanged in from the clearing runs (`exchanges`, unless given)."""
    params = MonthRange(month).params()
    values: dict[str, dict[int, int]] = {metric: {} for metric in METRIC_SQL}
    values["benefits"] = {int(bank): int(value) for bank, value in _rows(BENEFITS_SQL, params) if value}
    for bank, *figures in _rows(PAYMENT_METRICS_SQL, params):
        for metric, value in zip(PAYMENT_METRICS, figures, strict=True):
            if value:
                values[metric][int(bank)] = int(value)
    values["points_exchanged_in"] = dict((exchanged or exchanges(month)).points_exchanged_in)
    return values


def metric_values_by_definition(month: dt.date) -> dict[str, dict[int, int]]:
    """metric → bank id → value, one definition statement per metric, everything from the ledger and the payments
    (what `metric_values` must equal)."""
    params = MonthRange(month).params()
    return {
        metric: {int(bank): int(value) for bank, value in _rows(sql, params) if value}
        for metric, sql in METRIC_SQL.items()
    }


def fee_share(month: dt.date) -> dict[str, int]:
    """Currency → the alliance's fee share of the month (hundredths of a minor unit)."""
    return {currency: int(amount) for currency, amount in _rows(FEE_SHARE_SQL, MonthRange(month).params()) if amount}


@dataclass(frozen=True)
class Exchanges:
    points_exchanged_in: dict[int, int]  # bank → ten-thousandths of CNY
    fees: int  # the alliance's exchange fees, ten-thousandths of CNY
    cleared_days: frozenset[dt.date]  # the days read from their clearing runs; the others from the ledger


def _day_ranges(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days as half-open ranges [first, last + 1)."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + dt.timedelta(days=1))
        else:
            ranges.append((day, day + dt.timedelta(days=1)))
    return ranges


def exchanges(month: dt.date) -> Exchanges:
    """The month's points exchanged in (per bank) and exchange fees, net of reversals: a day with a CNY clearing run
    that has netted is read from that run's components (what was cleared), any other day of the month from the ledger
    by the definitions (`POINTS_EXCHANGED_IN_SQL`, `EXCHANGE_FEES_SQL`) over that day's hours."""
    span = MonthRange(month)
    params = span.params()
    points: dict[int, int] = {}
    fees = 0
    for bank, kind, amount, payable in _rows(EXCHANGES_CLEARED_SQL, params):
        if bank is None:
            fees += int(amount) if kind in ("exchange_fee", "exchange_reversal") else 0
        elif kind == "exchange_in":
            points[int(bank)] = points.get(int(bank), 0) + int(amount)
        elif kind == "exchange_reversal":
            points[int(bank)] = points.get(int(bank), 0) - int(payable)
    cleared = frozenset(day for (day,) in _rows(CLEARED_DAYS_SQL, params))
    days = [month + dt.timedelta(days=n) for n in range((span.end_month - month).days)]
    for first, after in _day_ranges([day for day in days if day not in cleared]):
        bounds = {
            "start": dt.datetime.combine(first, dt.time(0), tzinfo=SHANGHAI),
            "end": dt.datetime.combine(after, dt.time(0), tzinfo=SHANGHAI),
        }
        for bank, value in _rows(POINTS_EXCHANGED_IN_SQL, bounds):
            points[int(bank)] = points.get(int(bank), 0) + int(value)
        fees += int(_rows(EXCHANGE_FEES_SQL, bounds)[0][0])
    return Exchanges({bank: value for bank, value in points.items() if value}, fees, cleared)


def exchange_fees(month: dt.date) -> int:
    """The alliance's exchange fees of the month, net of reversals (ten-thousandths of CNY)."""
    return exchanges(month).fees
