"""The alliance's reads.

Clearing statements: a position, what makes it up (its components) and the ledger transactions behind it, read by
one query over the day's entries of the party's accounts (a bank's own clearing account and its sponsored merchants';
the alliance's fee account) — never copied per line. See docs/clearing.md.

Revenue share: history for the chart, and a statement as CSV rows. See docs/revenue-share.md.

Segments: a cardholder's tags and how each was derived (the portal), and a merchant's aggregates per tag over cohorts
of at least MIN_COHORT (the merchant API). See docs/segments.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from core.admin_display import money_text
from core.calendar import local_now
from core.money import to_money
from core.partitions import archive_tables_of, with_archives
from core.personal import MIN_COHORT
from members.models import Cardholder, ConsentPurpose, MemberBank, SpendCategory
from members.selectors import consent_granted
from merchants.models import Merchant
from payments.selectors import payments_created_for_captures
from rewards.models import CURRENCY_SCALE, Account, Entry, LedgerTransaction

from .models import (
    METRIC_UNITS,
    ClearingComponent,
    ClearingPosition,
    Metric,
    RevenueShareRun,
    RevenueShareStatement,
    SegmentMembership,
    SegmentRule,
)
from .services.clearing import day_bounds, kind_sql

# --- clearing statements -------------------------------------------------------------------------------------------

STATEMENT_CHUNK = 2000


def units_text(units: int) -> str:
    """Ledger units (ten-thousandths) as a decimal string with four places, exactly: 12345 → "1.2345"."""
    return str((Decimal(units) / CURRENCY_SCALE).quantize(Decimal(1) / CURRENCY_SCALE))


def minor_text(minor: int, currency: str) -> str:
    from core.money import exponent

    places = exponent(currency)
    return str((Decimal(minor).scaleb(-places)).quantize(Decimal(1).scaleb(-places))) if places else str(minor)


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    transaction_id: int
    transaction_kind: str
    created_at: datetime
    component: str
    merchant: str  # the sponsored merchant's code when the line is carried for one
    payment: str  # the payment the transaction names (or the one its reversed transaction names)
    benefit: str
    reverses: int | None
    counterparties: str
    amount: int  # signed, ten-thousandths: + receivable, − payable


def _party_filter(position: ClearingPosition) -> tuple[str, dict[str, Any]]:
    if position.bank_id is None:
        return "a.owner_kind = 'alliance'", {}
    return (
        "((a.owner_kind = 'bank' AND a.owner_id = %(bank)s)"
        " OR (a.owner_kind = 'merchant' AND mer.sponsor_bank_id = %(bank)s))",
        {"bank": position.bank_id},
    )


# The columns a position's lines read of the ledger's entries and transactions (an archive table keeps its month's).
_LINE_ENTRY_COLUMNS = ("id", "transaction_id", "account_id", "spread", "unit", "amount", "created_at")
_LINE_TRANSACTION_COLUMNS = ("id", "kind", "created_at", "metadata", "reverses_id", "reverses_created_at")


def _lines_sql(party: str) -> str:
    """A page of a position's lines. A day whose month of the ledger was archived is read from the archive tables
    (`with_archives`): the run's positions stay, and so do the lines that explain them."""
    account = Account._meta.db_table
    bank, merchant = MemberBank._meta.db_table, Merchant._meta.db_table
    archives = archive_tables_of([Entry._meta.db_table, LedgerTransaction._meta.db_table])
    entry = with_archives(Entry._meta.db_table, _LINE_ENTRY_COLUMNS, archives[Entry._meta.db_table])
    transactions = with_archives(
        LedgerTransaction._meta.db_table, _LINE_TRANSACTION_COLUMNS, archives[LedgerTransaction._meta.db_table]
    )
    return f"""
        SELECT e.id, t.id, t.kind, t.created_at, {kind_sql(transactions)}, coalesce(mer.code, ''),
               coalesce(t.metadata->>'payment', o.metadata->>'payment', ''),
               coalesce(t.metadata->>'benefit_id', o.metadata->>'benefit_id', ''),
               t.reverses_id,
               (SELECT coalesce(string_agg(DISTINCT CASE a2.owner_kind WHEN 'bank' THEN b2.code
                                                    WHEN 'merchant' THEN m2.code ELSE 'alliance' END, ' '), '')
                  FROM {entry} e2 JOIN {account} a2 ON a2.id = e2.account_id AND a2.spread = e2.spread
                  LEFT JOIN {bank} b2 ON a2.owner_kind = 'bank' AND b2.id = a2.owner_id
                  LEFT JOIN {merchant} m2 ON a2.owner_kind = 'merchant' AND m2.id = a2.owner_id
                 WHERE e2.transaction_id = t.id AND e2.created_at = t.created_at AND e2.id <> e.id AND e2.unit = e.unit
                   AND a2.purpose IN ('clearing', 'fees')),
               e.amount
        FROM {transactions} t
        JOIN {entry} e ON e.transaction_id = t.id AND e.created_at = t.created_at
        JOIN {account} a ON a.id = e.account_id AND a.spread = e.spread
        LEFT JOIN {merchant} mer ON a.owner_kind = 'merchant' AND mer.id = a.owner_id
        LEFT JOIN {transactions} o ON o.id = t.reverses_id AND o.created_at = t.reverses_created_at
        WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
          AND e.created_at >= %(start)s AND e.created_at < %(end)s
          AND a.purpose IN ('clearing', 'fees') AND e.unit = %(currency)s
          AND {party} AND e.id > %(after)s
        ORDER BY e.id
        LIMIT %(limit)s
    """  # noqa: S608 - table names from the models


def statement_lines(position: ClearingPosition, *, after: int = 0, limit: int = STATEMENT_CHUNK) -> list[StatementLine]:
    """A page of the position's traceable lines, in entry order after entry `after` (keyset: every page costs the
    same)."""
    run = position.run
    start, end = day_bounds(run.business_day)
    party, params = _party_filter(position)
    params.update(start=start, end=end, currency=run.currency, after=after, limit=limit)
    with connection.cursor() as cursor:
        cursor.execute(_lines_sql(party), params)
        return [StatementLine(*row) for row in cursor.fetchall()]


def statement_lines_all(position: ClearingPosition, *, chunk: int = STATEMENT_CHUNK) -> Iterator[StatementLine]:
    after = 0
    while True:
        page = statement_lines(position, after=after, limit=chunk)
        yield from page
        if len(page) < chunk:
            return
        after = page[-1].entry_id


def statement_components(position: ClearingPosition) -> list[ClearingComponent]:
    return list(
        ClearingComponent.objects.filter(position=position).select_related("merchant").order_by("merchant_id", "kind")
    )


def party_name(position: ClearingPosition) -> str:
    if position.bank_id is None:
        return "Alliance / 联盟"
    bank = position.bank
    assert bank is not None
    return f"{bank.code} {bank.name_zh}"


STATEMENT_CSV_HEADER = [
    "section", "transaction", "kind", "time", "component", "merchant", "payment", "benefit", "reverses",
    "counterparties", "amount",
]  # fmt: skip


def statement_csv(position: ClearingPosition) -> Iterator[str]:
    """The statement as CSV rows, streamed: the position, its components, then every traceable line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    run = position.run
    writer.writerow(["clearing statement", run.business_day.isoformat(), run.currency, position.party_code])
    writer.writerow(["position", "receivable", units_text(position.receivable)])
    writer.writerow(["position", "payable", units_text(position.payable)])
    writer.writerow(["position", "net (exact)", units_text(position.net)])
    writer.writerow(["position", "net (rounded)", minor_text(position.net_minor, run.currency)])
    writer.writerow(["position", "rounding", units_text(position.rounding)])
    writer.writerow(["component", "kind", "merchant", "count", "receivable", "payable", "net"])
    for component in statement_components(position):
        writer.writerow(
            [
                "component",
                component.kind,
                component.merchant.code if component.merchant else "",
                component.count,
                units_text(component.receivable),
                units_text(component.payable),
                units_text(component.amount),
            ]
        )
    writer.writerow(STATEMENT_CSV_HEADER)
    yield flush()
    for n, line in enumerate(statement_lines_all(position), start=1):
        writer.writerow(
            [
                "line",
                line.transaction_id,
                line.transaction_kind,
                line.created_at.isoformat(),
                line.component,
                line.merchant,
                line.payment,
                line.benefit,
                line.reverses or "",
                line.counterparties,
                units_text(line.amount),
            ]
        )
        if n % 500 == 0:
            yield flush()
    yield flush()


CURRENT = (RevenueShareRun.Status.PROVISIONAL, RevenueShareRun.Status.FINAL)  # a month's latest version


def months_back(count: int, *, until: dt.date | None = None) -> list[dt.date]:
    """The first days of the `count` months ending with `until`'s month (this month by default), oldest first."""
    month = (until or local_now().date()).replace(day=1)
    months = [month]
    while len(months) < count:
        month = (month - dt.timedelta(days=1)).replace(day=1)
        months.append(month)
    return months[::-1]


@dataclass
class BankSeries:
    bank: MemberBank
    amounts: list[int | None] = field(default_factory=list)  # fen, one per month; None: no run for the month
    shares: list[Decimal | None] = field(default_factory=list)


@dataclass
class ShareHistory:
    months: list[dt.date]
    banks: list[BankSeries]

    def chart_data(self) -> dict[str, Any]:
        """What the chart script draws: amounts in CNY (yuan), one line per bank in its brand colour."""
        return {
            "months": [f"{month:%Y-%m}" for month in self.months],
            "unit": "CNY",
            "banks": [
                {
                    "label": series.bank.code,
                    "colour": series.bank.brand_colour,
                    "values": [None if amount is None else amount / 100 for amount in series.amounts],
                }
                for series in self.banks
            ],
        }

    def table(self) -> list[dict[str, Any]]:
        """The same numbers as rows (a month per row, a bank per column), for the table beside the chart."""
        return [
            {
                "month": f"{month:%Y-%m}",
                "cells": [
                    {
                        "amount": "–" if series.amounts[i] is None else money_text(series.amounts[i], "CNY"),
                        "share": "" if series.shares[i] is None else f"{(series.shares[i] or 0) * 100:.2f} %",
                    }
                    for series in self.banks
                ],
            }
            for i, month in enumerate(self.months)
        ]


def share_history(statements: QuerySet[RevenueShareStatement], *, months: int = 12) -> ShareHistory:
    """Each bank's share (amount and fraction of the pool) in the latest version of each of the last `months` months,
    from `statements` (already limited to what the reader may see)."""
    window = months_back(months)
    rows = (
        statements.filter(run__status__in=CURRENT, run__month__gte=window[0], run__month__lte=window[-1])
        .select_related("bank", "run")
        .order_by("bank__code", "run__month")
    )
    index = {month: i for i, month in enumerate(window)}
    by_bank: dict[int, BankSeries] = {}
    for statement in rows:
        series = by_bank.get(statement.bank_id)
        if series is None:
            series = by_bank[statement.bank_id] = BankSeries(statement.bank, [None] * len(window), [None] * len(window))
        i = index[statement.run.month]
        series.amounts[i], series.shares[i] = statement.amount, statement.share
    return ShareHistory(window, sorted(by_bank.values(), key=lambda series: series.bank.code))


def metric_value_text(metric: str, value: int) -> str:
    unit = METRIC_UNITS[metric]
    if unit == "units":
        return money_text(value, "CNY", absolute=4)
    if unit == "fen":
        return money_text(value, "CNY")
    return f"{value:,}"


def revenue_statement_lines(statement: RevenueShareStatement) -> list[dict[str, Any]]:
    """The statement's metric lines with their labels and values as text."""
    labels = dict(Metric.choices)
    return [
        {
            **line,
            "label": labels.get(line["metric"], line["metric"]),
            "value_text": metric_value_text(line["metric"], line["value"]),
            "total_text": metric_value_text(line["metric"], line["total"]),
        }
        for line in statement.lines
    ]


def _cny(amount: int | None) -> str:
    return "" if amount is None else f"{Decimal(amount).scaleb(-2):.2f}"


def revenue_statement_csv(statement: RevenueShareStatement) -> str:
    """The statement as CSV: who and which version, then every metric (value, all banks' total, normalised share,
    weight, effective weight, weighted share, and the same for the costs), then share, amount, cost, net and the
    difference from the previous version. Amounts in CNY with two decimals; metric values in their own unit."""
    run = statement.run
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("bank"), statement.bank.code, statement.bank.name_en])
    writer.writerow([_("month"), f"{run.month:%Y-%m}", _("version"), run.version, run.get_status_display()])
    writer.writerow([_("policy version"), run.policy.version, _("pool (CNY)"), _cny(run.pool)])
    writer.writerow([_("running costs (CNY)"), _cny(run.costs)])
    writer.writerow([])
    writer.writerow(
        [
            _("metric"),
            _("value"),
            _("unit"),
            _("all banks"),
            _("normalised share"),
            _("weight"),
            _("effective weight"),
            _("weighted share"),
            _("cost weight"),
            _("effective cost weight"),
            _("weighted cost share"),
        ]
    )
    for line in statement.lines:
        writer.writerow(
            [
                line["metric"],
                line["value"],
                METRIC_UNITS[line["metric"]],
                line["total"],
                line["normalised"],
                line["weight"],
                line["effective_weight"],
                line["weighted_share"],
                line["cost_weight"],
                line["cost_effective_weight"],
                line["cost_weighted_share"],
            ]
        )
    writer.writerow([])
    writer.writerow([_("share of the pool"), statement.share])
    writer.writerow([_("share of the costs"), statement.cost_share])
    writer.writerow([_("share (CNY)"), _cny(statement.amount)])
    writer.writerow([_("cost part (CNY)"), _cny(statement.cost)])
    writer.writerow([_("net (CNY)"), _cny(statement.net)])
    if run.previous_id is not None:
        writer.writerow([_("share difference from the previous version (CNY)"), _cny(statement.amount_difference)])
        writer.writerow([_("cost difference from the previous version (CNY)"), _cny(statement.cost_difference)])
        writer.writerow([_("net difference from the previous version (CNY)"), _cny(statement.net_difference)])
    return out.getvalue()


# --- segments --------------------------------------------------------------------------------------------------------


def _yuan(minor: int) -> str:
    """Fen as yuan with thousands separators: 123456 → "1,234.56"."""
    return f"{to_money(minor, 'CNY').amount:,.2f}"


def segment_rule_text(rule: SegmentRule) -> str:
    """A rule in words, in the page's language: what a cardholder's payments must reach to carry its tag."""
    labels = dict(SpendCategory.choices)
    if rule.categories:
        where = _("in %(categories)s") % {"categories": _(" or ").join(str(labels[c]) for c in rule.categories)}
    else:
        where = _("at any alliance merchant")
    values = {"count": rule.min_payments, "amount": _yuan(rule.min_amount), "where": where, "days": rule.window_days}
    if rule.min_payments and rule.min_amount:
        text = _(
            "At least %(count)s payments and ¥%(amount)s spent (net of refunds) %(where)s in the last %(days)s days."
        )
    elif rule.min_payments:
        text = _("At least %(count)s payments %(where)s in the last %(days)s days.")
    else:
        text = _("At least ¥%(amount)s spent (net of refunds) %(where)s in the last %(days)s days.")
    return text % values


@dataclass(frozen=True)
class SegmentTagLine:
    tag: str
    label: str
    derived: bool  # by a rule (with the figures below); else set by an operator
    rule_text: str = ""
    explanation: str = ""
    payments_count: int = 0
    amount_text: str = ""
    window_days: int = 0
    computed_at: datetime | None = None
    rule_changed: bool = False  # the rule has changed since: the next run decides again


@dataclass(frozen=True)
class SegmentRuleLine:
    tag: str
    label: str
    rule_text: str
    explanation: str


@dataclass(frozen=True)
class CardholderSegments:
    consenting: bool
    tags: list[SegmentTagLine]
    rules: list[SegmentRuleLine]  # the active rules, so that anyone can see what could tag them


def cardholder_segments(cardholder: Cardholder) -> CardholderSegments:
    """The cardholder's tags and how each was derived, with the rules in force; no tags without the consent to
    personalised offers. Three queries."""
    consenting = consent_granted(cardholder, ConsentPurpose.PERSONALISED_OFFERS)
    rules = {rule.code: rule for rule in SegmentRule.objects.order_by("code")}
    active = [
        SegmentRuleLine(rule.code, rule.local_name, segment_rule_text(rule), rule.local_description)
        for rule in rules.values()
        if rule.active
    ]
    if not consenting:
        return CardholderSegments(consenting=False, tags=[], rules=active)
    memberships = {m.tag: m for m in SegmentMembership.objects.filter(cardholder=cardholder).select_related("rule")}
    lines = []
    for tag in cardholder.segment_tags or []:
        membership = memberships.get(tag)
        rule = membership.rule if membership is not None else rules.get(tag)
        label = rule.local_name if rule is not None else tag
        if membership is None or rule is None:
            lines.append(SegmentTagLine(tag=tag, label=label, derived=False))
            continue
        lines.append(
            SegmentTagLine(
                tag=tag,
                label=label,
                derived=True,
                rule_text=segment_rule_text(rule),
                explanation=rule.local_description,
                payments_count=membership.payments_count,
                amount_text=_yuan(membership.amount),
                window_days=membership.window_days,
                computed_at=membership.computed_at,
                rule_changed=membership.rule_version != rule.version,
            )
        )
    return CardholderSegments(consenting=True, tags=lines, rules=active)


# A merchant's paying customers per segment tag over a window, counting only cardholders who consent to personalised
# offers (tags are used only under that consent) and payments of the key's mode and one currency, net of refunds
# (a payment refunded in full does not count).
SEGMENT_STATS_SQL = """
SELECT t.tag, COUNT(DISTINCT p.cardholder_id) AS customers, SUM(p.amount_captured - p.amount_refunded) AS spend
FROM payments_paymentintent p
JOIN members_cardholder c ON c.id = p.cardholder_id
JOIN members_consent k ON k.cardholder_id = c.id AND k.purpose = %(purpose)s AND k.granted
CROSS JOIN LATERAL jsonb_array_elements_text(c.segment_tags) AS t(tag)
WHERE p.merchant_id = %(merchant)s AND p.livemode = %(livemode)s AND p.currency = %(currency)s
  AND p.status = 'succeeded' AND p.amount_captured > p.amount_refunded
  AND p.captured_at >= %(start)s AND p.captured_at < %(end)s
  AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
GROUP BY t.tag
""".strip()


def segment_stats(
    *, merchant: Merchant, livemode: bool, currency: str, days: int, now: datetime | None = None
) -> dict[str, Any]:
    """Per segment tag, the merchant's distinct paying customers who carry it and their spend in the last `days`.
    A cohort under MIN_COHORT is withheld: a rule's tag is listed without figures, another tag not at all."""
    end = now or timezone.now()
    start = end - dt.timedelta(days=days)
    created_from, created_to = payments_created_for_captures(start, end)  # the months those payments are in
    params: dict[str, Any] = {
        "created_from": created_from,
        "created_to": created_to,
        "purpose": ConsentPurpose.PERSONALISED_OFFERS.value,
        "merchant": merchant.pk,
        "livemode": livemode,
        "currency": currency,
        "start": start,
        "end": end,
    }
    with connection.cursor() as cursor:
        cursor.execute(SEGMENT_STATS_SQL, params)
        found = {tag: (customers, spend) for tag, customers, spend in cursor.fetchall()}
    rules = {rule.code: rule for rule in SegmentRule.objects.filter(active=True)}
    rows = []
    for tag in sorted(set(rules) | set(found)):
        customers, spend = found.get(tag, (0, 0))
        shown = customers >= MIN_COHORT
        if not shown and tag not in rules:
            continue
        rule = rules.get(tag)
        rows.append(
            {
                "tag": tag,
                "label": (rule.name_en or rule.name) if rule is not None else None,
                "suppressed": not shown,
                "customers": customers if shown else None,
                "spend": int(spend) if shown else None,
            }
        )
    return {
        "object": "segment.stats",
        "livemode": livemode,
        "currency": currency,
        "days": days,
        "since": int(start.timestamp()),
        "until": int(end.timestamp()),
        "min_cohort": MIN_COHORT,
        "data": rows,
    }
