"""The alliance's reads: revenue-share history for the chart, and a statement as CSV rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from core.admin_display import money_text
from core.calendar import local_now
from members.models import MemberBank

from .models import METRIC_UNITS, Metric, RevenueShareRun, RevenueShareStatement

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


def statement_lines(statement: RevenueShareStatement) -> list[dict[str, Any]]:
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


def statement_csv(statement: RevenueShareStatement) -> str:
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
