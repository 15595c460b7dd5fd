"""Merchant settlement (结算): what each merchant is owed for a period, written set-based, chunk by chunk.

A run settles one cycle's period: a business date for T+1 merchants (`2026-12-04`, settled on the next working day),
or an intraday window for T+0 merchants (`2026-12-05T14:00`, settled that day). It finds the merchants of that cycle
with something to settle and no batch for the period yet, then works through them `chunk_merchants` at a time,
`workers` chunks at once. Each chunk is one transaction of a few statements over the whole chunk, never a loop over
payments:

1. the chunk's merchants locked (FOR SHARE) against a void, which takes its merchant's lock first; then the chunk's
   captured payments and succeeded refunds in the period that are on no line yet, into a work table;
2. a batch per merchant, currency and mode (`ON CONFLICT DO NOTHING` on the unique period);
3. the lines: a payment or refund each, the reserve of each earlier batch due for release, the negative net of each
   earlier carried batch;
4. the batch totals by GROUP BY over its lines, the fee rounded once, the reserve, the net and the status;
5. the split instructions (分账) for each acquirer of record.

A chunk commits whole or not at all, and a merchant with a batch for the period is skipped: a run killed at any point
and run again settles each merchant once, with nothing missing. See docs/settlement.md for the formulas.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg2 import sql

from core.calendar import SHANGHAI, add_working_days, is_working_day, local_now, next_working_day
from core.errors import Conflict, ValidationFailed
from core.jobs import job_run
from core.partitions import with_archives
from core.selectors import succeeded_periods
from merchants.models import Merchant, SettlementCycle
from rewards import services as rewards_services
from rewards.models import Promotion, PromotionUse

from ..models import (
    Channel,
    Dispute,
    FeeParty,
    FeeSplit,
    PaymentIntent,
    ReconciliationException,
    Refund,
    ReservePolicy,
    SettlementBatch,
    SettlementLine,
    SplitInstruction,
)
from ..windows import RELEASED_HOLD_DAYS, payments_created_for, refunds_created_for

JOBS: dict[str, str] = {SettlementCycle.T1: "settlement.t1", SettlementCycle.T0: "settlement.t0"}
_DEFAULT_CUTOFF = dt.time(23, 0)


# --- periods ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """What a run settles: its label, cut-off and settlement date, and which payments and refunds it may take —
    business dates in [business_from, business_to], and for a T+0 window only those captured (refunded) before it."""

    cycle: str
    label: str
    cutoff_at: dt.datetime
    settle_on: dt.date
    business_from: dt.date
    business_to: dt.date
    before: dt.datetime | None = None


def _catch_up_from(day: dt.date) -> dt.date:
    """The earliest business date a period on `day` still takes from: SETTLEMENT_CATCH_UP_WORKING_DAYS working days
    back (a payment no run could see was in flight when the previous period's run read it, and lands in the next).
    Each run reads its merchants' payments of those business dates again, so the bound is in working days, not
    calendar days, which a long holiday would stretch."""
    earliest = day
    for _step in range(settings.SETTLEMENT_CATCH_UP_WORKING_DAYS):
        earliest -= dt.timedelta(days=1)
        while not is_working_day(earliest):
            earliest -= dt.timedelta(days=1)
    return earliest


def t1_period(day: dt.date) -> Period:
    """Business date `day`: every payment and refund of that business date or before (catch-up), settled on the next
    working day. The cut-off shown is the earliest channel cut-off that ends the day."""
    if not is_working_day(day):
        raise ValidationFailed(
            f"{day.isoformat()} is not a working day: no payment has it as its business date.",
            code="not_a_business_date",
            param="period",
        )
    earliest = Channel.objects.aggregate(earliest=Min("cutoff"))["earliest"] or _DEFAULT_CUTOFF
    return Period(
        cycle=SettlementCycle.T1,
        label=day.isoformat(),
        cutoff_at=dt.datetime.combine(day, earliest, tzinfo=SHANGHAI),
        settle_on=next_working_day(day),
        business_from=_catch_up_from(day),
        business_to=day,
    )


def t0_windows() -> list[dt.time]:
    return sorted(dt.time.fromisoformat(value) for value in settings.SETTLEMENT_T0_WINDOWS)


def t0_period(cutoff: dt.datetime) -> Period:
    """The T+0 window closing at `cutoff` (a configured window time): what was captured or refunded before it,
    settled that day. A payment captured before the cut-off has a business date no later than the next working day."""
    local = cutoff.astimezone(SHANGHAI)
    if local.time().replace(second=0, microsecond=0) != local.time() or local.time() not in t0_windows():
        raise ValidationFailed(
            f"{local:%H:%M} is not a T+0 window (windows: {', '.join(settings.SETTLEMENT_T0_WINDOWS)}).",
            code="not_a_window",
            param="period",
        )
    day = local.date()
    return Period(
        cycle=SettlementCycle.T0,
        label=f"{day.isoformat()}T{local:%H:%M}",
        cutoff_at=local,
        settle_on=day,
        business_from=_catch_up_from(day),
        business_to=next_working_day(day),
        before=local,
    )


def period_for(cycle: str, label: str) -> Period:
    """A period from its label: `2026-12-04` (T+1) or `2026-12-05T14:00` (T+0)."""
    try:
        if cycle == SettlementCycle.T1:
            return t1_period(dt.date.fromisoformat(label))
        if cycle == SettlementCycle.T0:
            moment = dt.datetime.fromisoformat(label)
            if moment.tzinfo is not None:
                raise ValueError(label)
            return t0_period(moment.replace(tzinfo=SHANGHAI))
    except ValueError:
        raise ValidationFailed(
            f"Not a period of cycle {cycle}: {label!r} (T+1: 2026-12-04, T+0: 2026-12-05T14:00).",
            code="invalid_period",
            param="period",
        ) from None
    raise ValidationFailed(f"Unknown settlement cycle {cycle!r}.", code="invalid_cycle", param="cycle")


def t0_cutoff_after(moment: dt.datetime) -> dt.datetime:
    """The cut-off of the T+0 window a payment captured at `moment` settles in: the first window time after it."""
    local = moment.astimezone(SHANGHAI)
    for window in t0_windows():
        cutoff = dt.datetime.combine(local.date(), window, tzinfo=SHANGHAI)
        if cutoff > local:
            return cutoff
    return dt.datetime.combine(local.date() + dt.timedelta(days=1), t0_windows()[0], tzinfo=SHANGHAI)


def void_deadline(intent: PaymentIntent) -> dt.datetime | None:
    """Until when a captured payment may be voided (撤销): its settlement cut-off — its window's for a T+0 merchant;
    for T+1 the channel cut-off that ends its business date (`None` when it has none)."""
    if intent.captured_at is None or intent.business_date is None or intent.channel is None:
        return None
    if intent.merchant.settlement_cycle == SettlementCycle.T0:
        return t0_cutoff_after(intent.captured_at)
    return dt.datetime.combine(intent.business_date, intent.channel.cutoff, tzinfo=SHANGHAI)


def on_a_line(payment: PaymentIntent) -> bool:
    """Whether the payment is on a settlement line: its month's partition and any archived month's (by id and month: by
    the id alone it would probe every month)."""
    query = sql.SQL("SELECT 1 FROM {} l WHERE l.payment_id = %s AND l.payment_created_at = %s AND l.kind = 'payment'")
    with connection.cursor() as cursor:
        cursor.execute(query.format(_every_line()), [payment.pk, payment.created_at])
        return cursor.fetchone() is not None


# --- the run ----------------------------------------------------------------------------------------------------------


@dataclass
class SettleReport:
    cycle: str
    period: str
    merchants: int = 0
    chunks: int = 0
    batches: int = 0
    lines: int = 0


def settle(
    cycle: str,
    period: str,
    *,
    chunk_merchants: int | None = None,
    workers: int | None = None,
    echo: IO[str] | None = None,
) -> SettleReport:
    """Settles `cycle`'s `period` as one job run, `chunk_merchants` merchants per transaction, `workers` chunks at a
    time (each on a connection of its own; one at a time inside a caller's transaction, which other connections
    could not see). Running it again is a no-op for every merchant already settled; a run left unfinished (killed)
    is taken over and finished."""
    target = period_for(cycle, period)
    size = chunk_merchants or settings.SETTLEMENT_CHUNK_MERCHANTS
    parallel = workers or settings.SETTLEMENT_WORKERS
    if size < 1 or parallel < 1:
        raise ValidationFailed(
            "A chunk holds at least one merchant, and one worker at least settles them.",
            code="invalid_chunk",
            param="chunk_merchants",
        )
    if timezone.now() < target.cutoff_at:
        raise ValidationFailed(
            f"Period {target.label} is not over yet: it closes at {target.cutoff_at:%Y-%m-%d %H:%M}.",
            code="period_open",
            param="period",
        )
    report = SettleReport(cycle=str(target.cycle), period=target.label)
    with job_run(JOBS[target.cycle], period=target.label, echo=echo) as run:
        merchants = _candidates(target)
        report.merchants = len(merchants)
        run.set_total(len(merchants))
        terms = _reserve_terms(target.settle_on)
        chunks = [merchants[start : start + size] for start in range(0, len(merchants), size)]

        def done(chunk: list[int], batches: int, lines: int) -> None:
            report.chunks += 1
            report.batches += batches
            report.lines += lines
            run.advance(len(chunk), batches=batches, lines=lines)

        if parallel == 1 or len(chunks) < 2 or connection.in_atomic_block:
            for chunk in chunks:
                done(chunk, *_settle_chunk(target, chunk, terms))
                _pause()
        else:
            _settle_in_parallel(target, chunks, terms, parallel, done)
    return report


def _pause() -> None:
    if settings.SETTLEMENT_CHUNK_PAUSE > 0:
        time.sleep(settings.SETTLEMENT_CHUNK_PAUSE)


def _settle_in_parallel(
    target: Period,
    chunks: list[list[int]],
    terms: list[tuple[str, Any, dt.date]],
    workers: int,
    done: Callable[[list[int], int, int], None],
) -> None:
    """Chunks on `workers` threads, each chunk one transaction on the thread's own connection (the merchants of two
    chunks never meet, so neither do their rows or locks). The first failure cancels the chunks not started."""

    def work(chunk: list[int]) -> tuple[int, int]:
        try:
            written = _settle_chunk(target, chunk, terms)
            _pause()
            return written
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="settle") as pool:
        futures = {pool.submit(work, chunk): chunk for chunk in chunks}
        try:
            for future in as_completed(futures):
                done(futures[future], *future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def settle_due_t1(*, today: dt.date | None = None, echo: IO[str] | None = None) -> list[SettleReport]:
    """Settles, oldest first, every business date of the last SETTLEMENT_T1_LOOKBACK_DAYS whose settlement day has
    come and that has no successful run yet. Stops at a date another run is settling: a later date must not take
    an earlier one's payments meanwhile."""
    today = today or local_now().date()
    days = [today - dt.timedelta(days=n) for n in range(settings.SETTLEMENT_T1_LOOKBACK_DAYS, 0, -1)]
    days = [day for day in days if is_working_day(day) and next_working_day(day) <= today]
    return _settle_each(SettlementCycle.T1, [day.isoformat() for day in days], echo)


def settle_due_t0(*, now: dt.datetime | None = None, echo: IO[str] | None = None) -> list[SettleReport]:
    """Settles the T+0 windows closed in the last day that have no successful run yet, oldest first: the one that
    just closed, and any a stopped worker missed."""
    local = (now or timezone.now()).astimezone(SHANGHAI)
    cutoffs = [
        dt.datetime.combine(local.date() - dt.timedelta(days=back), window, tzinfo=SHANGHAI)
        for back in (1, 0)
        for window in t0_windows()
    ]
    labels = [
        f"{cutoff.date().isoformat()}T{cutoff:%H:%M}"
        for cutoff in cutoffs
        if cutoff <= local and local - cutoff < dt.timedelta(days=1)
    ]
    return _settle_each(SettlementCycle.T0, labels, echo)


def _settle_each(cycle: str, labels: list[str], echo: IO[str] | None) -> list[SettleReport]:
    done = succeeded_periods(JOBS[cycle], labels)
    reports = []
    for label in labels:
        if label in done:
            continue
        try:
            reports.append(settle(cycle, label, echo=echo))
        except Conflict:
            break  # another run is settling it; the next run carries on from there
    return reports


# --- the SQL ----------------------------------------------------------------------------------------------------------


def _tables() -> dict[str, sql.Identifier]:
    models: dict[str, Any] = {
        "payment": PaymentIntent,
        "refund": Refund,
        "fee": FeeSplit,
        "batch": SettlementBatch,
        "line": SettlementLine,
        "split": SplitInstruction,
        "merchant": Merchant,
        "use": PromotionUse,
        "promotion": Promotion,
        "recon": ReconciliationException,
        "dispute": Dispute,
    }
    return {name: sql.Identifier(model._meta.db_table) for name, model in models.items()}


def _candidates(period: Period) -> list[int]:
    """The merchants of the period's cycle with no batch for it yet and something to settle: a payment or refund of
    the period on no line, a reserve due, a negative net to carry. "On no line" is a probe of the payment's month's
    partition of the lines per payment or refund (OFFSET 0, as in the chunk): as an anti join the planner would read
    every month's lines."""
    params = _selection(period)
    query = sql.SQL(
        """
        SELECT m.id FROM {merchant} m
        WHERE m.settlement_cycle = %(cycle)s
          AND NOT EXISTS (SELECT 1 FROM {batch} b WHERE b.merchant_id = m.id AND b.period = %(period)s)
          AND (
            EXISTS (
              SELECT 1 FROM {payment} p
              WHERE p.merchant_id = m.id AND p.business_date BETWEEN %(business_from)s AND %(business_to)s
                AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
                AND p.status = 'succeeded' AND p.amount_captured > 0 {captured_before}
                AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.payment_id = p.id AND l.payment_created_at = p.created_at
                                AND l.kind = 'payment' OFFSET 0)
                AND {payment_not_held})
            OR m.id IN (
              SELECT r.merchant_id FROM {refund} r
              WHERE r.business_date BETWEEN %(business_from)s AND %(business_to)s
                AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
                AND r.status = 'succeeded' {refunded_before}
                AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.refund_id = r.id
                                AND l.payment_created_at = r.intent_created_at AND l.kind = 'refund' OFFSET 0)
                AND {refund_not_held})
            OR m.id IN (SELECT released.merchant_id FROM {released_payments})
            OR m.id IN (SELECT released.merchant_id FROM {released_disputed})
            OR m.id IN (SELECT released.merchant_id FROM {released_refunds})
            OR m.id IN (SELECT d.merchant_id FROM {dispute} d WHERE {dispute_due})
            OR EXISTS (SELECT 1 FROM {batch} b WHERE b.merchant_id = m.id AND {earlier_due})
          )
        ORDER BY m.id
        """
    ).format(**_fragments(period), **_tables())
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return [row[0] for row in cursor.fetchall()]


def _selection(period: Period) -> dict[str, Any]:
    # The months the period's payments and refunds can be in (the capture and refund windows): PostgreSQL reads
    # those months' partitions only.
    created_from, created_to = payments_created_for(period.business_from, period.business_to)
    refunds_from, refunds_to = refunds_created_for(period.business_from, period.business_to)
    return {
        "created_from": created_from,
        "created_to": created_to,
        "refunds_from": refunds_from,
        "refunds_to": refunds_to,
        "cycle": period.cycle,
        "period": period.label,
        "cutoff_at": period.cutoff_at,
        "settle_on": period.settle_on,
        "business_from": period.business_from,
        "business_to": period.business_to,
        "before": period.before,
        "released_days": RELEASED_HOLD_DAYS,
        "charged": sorted(rewards_services.promotions.MERCHANT_CHARGED),
        "discounts": sorted(rewards_services.promotions.DISCOUNTS),
    }


def _every_line() -> sql.Composable:
    """The settlement lines, with those of the months archived (docs/scaling.md, "Settlement lines"): a read of
    whether a payment, a refund or a dispute is on a line yet that no window of recent months bounds (a dispute's
    debit, a released hold) must see a line in an archived month, or it would settle it again. The table itself while
    no month is archived; else each archive table is one more index probe."""
    columns = ("kind", "payment_id", "refund_id", "dispute_id", "payment_created_at")
    return sql.SQL(with_archives(SettlementLine._meta.db_table, columns))


def _fragments(period: Period) -> dict[str, sql.Composable]:
    tables = _tables()
    every_line = _every_line()
    return {
        **_held_fragments(tables, every_line),
        "captured_before": sql.SQL("AND p.captured_at < %(before)s" if period.before else ""),
        # A dispute lost, accepted or expired (not a retrieval request) before the cut-off, on no line yet: debited
        # from the merchant's next batch, once (a partial unique index on the lines).
        "dispute_due": sql.SQL(
            """d.status IN ('lost', 'accepted', 'expired') AND d.kind <> 'retrieval' AND d.closed_at < %(cutoff_at)s
               AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.dispute_id = d.id
                               AND l.payment_created_at = d.payment_created_at AND l.kind = 'dispute')"""
        ).format(line=every_line),
        "refunded_before": sql.SQL("AND r.completed_at < %(before)s" if period.before else ""),
        # An earlier batch of the merchant (`b`) whose reserve is due for release or whose negative net is to be
        # carried, and not yet.
        "earlier_due": sql.SQL(
            """b.status <> 'building' AND b.period <> %(period)s AND b.settle_on <= %(settle_on)s AND (
                 (b.reserve_held > 0 AND b.reserve_release_on <= %(settle_on)s
                  AND NOT EXISTS (SELECT 1 FROM {line} x WHERE x.source_id = b.id AND x.kind = 'reserve_release'
                                  AND x.payment_created_at IS NULL))
                 OR (b.status = 'carried' AND b.carried_out < 0
                  AND NOT EXISTS (SELECT 1 FROM {line} x WHERE x.source_id = b.id AND x.kind = 'carried'
                                  AND x.payment_created_at IS NULL)))"""
        ).format(line=tables["line"]),
    }


def _held_fragments(tables: dict[str, sql.Identifier], every_line: sql.Composable) -> dict[str, sql.Composable]:
    """Reconciliation's hold: a payment (`p`) or refund (`r`) that an open exception contradicts (the channel's
    statement lacks it, shows it failed or for another amount) is on no line until the exception is resolved; then it
    enters the merchant's next batch, however old its business date (`released_*`: those whose holding exception was
    resolved in the last RELEASED_HOLD_DAYS and that are on no line yet)."""
    # The exception names the payment's month (its table is partitioned by it): each probe reads that month's.
    held = """NOT EXISTS (SELECT 1 FROM {recon} e WHERE e.{column} = {alias}.id AND e.payment_created_at = {time}
                             AND e.holds_settlement AND e.txn_kind = {kind} AND e.status = 'open')"""
    # An open chargeback or error adjustment opened before its payment was settled holds the payment too.
    disputed = """NOT EXISTS (SELECT 1 FROM {dispute} d WHERE d.payment_id = p.id
                                 AND d.payment_created_at = p.created_at AND d.holds_settlement
                                 AND d.status IN ('open', 'evidence_submitted'))"""
    released = """
        (SELECT DISTINCT {select} FROM {recon} e {join}
         WHERE e.holds_settlement AND e.txn_kind = {txn_kind} AND e.status IN ('resolved', 'superseded')
           AND e.resolved_at >= %(cutoff_at)s - make_interval(days => %(released_days)s) AND e.{column} IS NOT NULL
           AND {alias}.business_date < %(business_from)s AND {condition}
           AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.{column} = {alias}.id AND l.payment_created_at = {time}
                           AND l.kind = {kind})
           AND {not_held}) released"""
    capture, refund = sql.Literal("capture"), sql.Literal("refund")
    payment_held = sql.SQL("{} AND {}").format(
        sql.SQL(held).format(
            recon=tables["recon"],
            column=sql.Identifier("payment_id"),
            alias=sql.Identifier("p"),
            kind=capture,
            time=sql.SQL("p.created_at"),
        ),
        sql.SQL(disputed).format(dispute=tables["dispute"]),
    )
    refund_held = sql.SQL(held).format(
        recon=tables["recon"],
        column=sql.Identifier("refund_id"),
        alias=sql.Identifier("r"),
        kind=refund,
        time=sql.SQL("r.intent_created_at"),
    )
    return {
        "payment_not_held": payment_held,
        "refund_not_held": refund_held,
        "released_payments": sql.SQL(released).format(
            select=sql.SQL("p.id, p.merchant_id, p.created_at"),
            recon=tables["recon"],
            join=sql.SQL("JOIN {payment} p ON p.id = e.payment_id AND p.created_at = e.payment_created_at").format(
                payment=tables["payment"]
            ),
            column=sql.Identifier("payment_id"),
            alias=sql.Identifier("p"),
            condition=sql.SQL("p.status = 'succeeded' AND p.amount_captured > 0"),
            txn_kind=capture,
            line=every_line,
            time=sql.SQL("p.created_at"),
            kind=sql.Literal("payment"),
            not_held=payment_held,
        ),
        # Held by a dispute that has closed since (won, lost, accepted, expired): whatever its business date.
        "released_disputed": sql.SQL(
            """
            (SELECT DISTINCT p.id, p.merchant_id, p.created_at FROM {dispute} d
               JOIN {payment} p ON p.id = d.payment_id AND p.created_at = d.payment_created_at
             WHERE d.holds_settlement AND d.status NOT IN ('open', 'evidence_submitted')
               AND d.closed_at >= %(cutoff_at)s - make_interval(days => %(released_days)s)
               AND p.business_date < %(business_from)s AND p.status = 'succeeded' AND p.amount_captured > 0
               AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.payment_id = p.id AND l.payment_created_at = p.created_at
                               AND l.kind = 'payment')
               AND {not_held}) released"""
        ).format(dispute=tables["dispute"], payment=tables["payment"], line=every_line, not_held=payment_held),
        "released_refunds": sql.SQL(released).format(
            select=sql.SQL("r.id, p.merchant_id, r.intent_created_at AS created_at"),
            recon=tables["recon"],
            join=sql.SQL(
                "JOIN {refund} r ON r.id = e.refund_id AND r.intent_created_at = e.payment_created_at"
                " JOIN {payment} p ON p.id = r.intent_id AND p.created_at = r.intent_created_at"
            ).format(refund=tables["refund"], payment=tables["payment"]),
            column=sql.Identifier("refund_id"),
            alias=sql.Identifier("r"),
            condition=sql.SQL("r.status = 'succeeded'"),
            txn_kind=refund,
            line=every_line,
            time=sql.SQL("r.intent_created_at"),
            kind=sql.Literal("refund"),
            not_held=refund_held,
        ),
    }


_PIVOT = "sum(f.amount) FILTER (WHERE f.party = {party}) AS {}, max(f.bank_id) FILTER (WHERE f.party = {party}) AS {}"


def _party_fragments() -> dict[str, sql.Composable]:
    """A line's fee splits as columns, one amount and one bank per party (a payment's capture and a refund have at
    most one FeeSplit row per party, by unique constraints), and back as rows. The chunk reads a payment's or a
    refund's splits by id and the payment's time, so each probe reads its month's partition."""
    parties = [str(party) for party in FeeParty.values]
    fee, bank = "fee_{}".format, "bank_{}".format
    return {
        "party_columns": sql.SQL(", ").join(
            sql.SQL("{} bigint, {} bigint").format(sql.Identifier(fee(p)), sql.Identifier(bank(p))) for p in parties
        ),
        "party_values": sql.SQL(", ").join(
            sql.SQL("parts.{}, parts.{}").format(sql.Identifier(fee(p)), sql.Identifier(bank(p))) for p in parties
        ),
        "party_pivot": sql.SQL(", ").join(
            sql.SQL(_PIVOT).format(sql.Identifier(fee(p)), sql.Identifier(bank(p)), party=sql.Literal(p))
            for p in parties
        ),
        "party_total": sql.SQL("COALESCE({}, 0)").format(
            sql.SQL(" + ").join(sql.SQL("COALESCE(parts.{}, 0)").format(sql.Identifier(fee(p))) for p in parties)
        ),
        "party_banks": sql.SQL(", ").join(sql.SQL("i.{}").format(sql.Identifier(bank(p))) for p in parties),
        "party_sums": sql.SQL(", ").join(sql.SQL("sum(i.{0}) AS {0}").format(sql.Identifier(fee(p))) for p in parties),
        "party_rows": sql.SQL(", ").join(
            sql.SQL("({}, i.{}, i.{})").format(sql.Literal(p), sql.Identifier(bank(p)), sql.Identifier(fee(p)))
            for p in parties
        ),
    }


def _reserve_terms(settle_on: dt.date) -> list[tuple[str, Any, dt.date]]:
    """Per risk grade: the reserve's percent and the working day a reserve held on `settle_on` is released."""
    return [
        (policy.risk_grade, policy.percent, add_working_days(settle_on, policy.hold_working_days))
        for policy in ReservePolicy.objects.all()
    ]


def _settle_chunk(period: Period, merchants: list[int], terms: list[tuple[str, Any, dt.date]]) -> tuple[int, int]:
    """One chunk, one transaction: returns (batches, lines) written."""
    tables = _tables()
    params = {**_selection(period), "merchants": merchants, "frozen": _("Payouts frozen")}
    fragments = {**_fragments(period), **_party_fragments()}
    with transaction.atomic(), connection.cursor() as cursor:

        def run(statement: str, **extra: sql.Composable) -> int:
            cursor.execute(sql.SQL(statement).format(**tables, **fragments, **extra), params)
            return cursor.rowcount

        for name in ("settle_items", "settle_batches", "settle_fee_parts"):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
        # The chunk's sorts and hashes (a few hundred thousand rows) in memory, for this transaction only.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        # No JIT compilation: the chunk's statements read their rows by index, and on a large day their estimated
        # cost passes the JIT thresholds, so each would spend a second or two compiling (measured at 10,000,000
        # payments: 2.2 s of JIT for a 0.12 s refunds statement) — every chunk, for every statement.
        cursor.execute("SET LOCAL jit = off")
        run(
            """
            CREATE TEMP TABLE settle_items (
              kind varchar(16), payment_id bigint, refund_id bigint, dispute_id bigint, payment_created_at timestamptz,
              merchant_id bigint, currency varchar(3),
              livemode boolean, acquirer_id bigint, amount bigint, fee bigint, promotion_charge bigint,
              cofunding_credit bigint, {party_columns}
            ) ON COMMIT DROP
            """
        )
        # 1. The merchants first, against a void (撤销): a void takes its merchant's row (FOR NO KEY UPDATE, which
        # FOR SHARE conflicts with) before its guarded UPDATE. So a void that came first has committed before the
        # statements below take their snapshots, and they see its payment no longer succeeded; one that comes later
        # waits for this chunk's commit, and its UPDATE, a new statement, then sees the line. Never both. (A lock per
        # merchant, not per payment: locking a million payment rows would rewrite a million tuples.)
        run("SELECT 1 FROM {merchant} WHERE id = ANY(%(merchants)s) ORDER BY id FOR SHARE")
        # What the chunk settles, each with its fee split by party (one index probe of its FeeSplit rows).
        payment_insert = """
            INSERT INTO settle_items
            SELECT 'payment', p.id, NULL::bigint, NULL::bigint, p.created_at, p.merchant_id, p.currency, p.livemode,
                   COALESCE(p.acquirer_id, m.sponsor_bank_id), p.amount_captured, p.fee,
                   COALESCE(promo.charge, 0), COALESCE(promo.credit, 0), {party_values}
            FROM {payment} p
            JOIN {merchant} m ON m.id = p.merchant_id
            LEFT JOIN LATERAL (
              SELECT sum(u.cost - u.cofunder_cost) FILTER (WHERE pr.kind = ANY(%(charged)s)) AS charge,
                     sum(u.cofunder_cost) FILTER (WHERE pr.kind = ANY(%(discounts)s)) AS credit
              FROM {use} u JOIN {promotion} pr ON pr.id = u.promotion_id
              WHERE p.promotions <> '[]'::jsonb AND u.payment = p.public_id AND u.status = 'consumed'
            ) promo ON true
            LEFT JOIN LATERAL (
              SELECT {party_pivot} FROM {fee} f
              WHERE f.payment_id = p.id AND f.payment_created_at = p.created_at AND f.event = 'capture'
            ) parts ON true
            WHERE {payment_where}
            """
        # "Not on a line yet" is one probe of the lines' unique index per payment (and per refund, below): OFFSET 0
        # keeps the NOT EXISTS a per-row subplan. As an anti join the planner hashes every line of the table when its
        # statistics lag behind it, as they do on a night that adds millions of lines (measured at 10,000,000
        # payments: 5.5 s a chunk, against 0.7 s probing).
        for where in (
            """p.merchant_id = ANY(%(merchants)s)
               AND p.business_date BETWEEN %(business_from)s AND %(business_to)s
               AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
               AND p.status = 'succeeded' AND p.amount_captured > 0 {captured_before}
               AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.payment_id = p.id AND l.payment_created_at = p.created_at
                               AND l.kind = 'payment' OFFSET 0)
               AND {payment_not_held}""",
            # Held by reconciliation earlier and released since: whatever its business date. One IN over a UNION,
            # not two INs joined by OR: the planner probes the payments by id and month for the (few) released ones,
            # where the OR made it scan every payment of every day, once per chunk.
            """(p.id, p.created_at) IN (
                 SELECT released.id, released.created_at FROM {released_payments}
                 WHERE released.merchant_id = ANY(%(merchants)s)
                 UNION
                 SELECT released.id, released.created_at FROM {released_disputed}
                 WHERE released.merchant_id = ANY(%(merchants)s))""",
        ):
            run(payment_insert, payment_where=sql.SQL(where).format(**tables, **fragments))
        run(
            """
            INSERT INTO settle_items
            SELECT 'refund', r.intent_id, r.id, NULL::bigint, r.intent_created_at, p.merchant_id, p.currency,
                   p.livemode, COALESCE(p.acquirer_id, m.sponsor_bank_id), -r.amount, {party_total},
                   -r.promotion_cost_returned, -r.cofunding_returned, {party_values}
            FROM {refund} r
            JOIN {payment} p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
            JOIN {merchant} m ON m.id = p.merchant_id
            LEFT JOIN LATERAL (
              SELECT {party_pivot} FROM {fee} f WHERE f.refund_id = r.id AND f.payment_created_at = r.intent_created_at
            ) parts ON true
            WHERE r.merchant_id = ANY(%(merchants)s)
              AND r.business_date BETWEEN %(business_from)s AND %(business_to)s
              AND r.intent_created_at >= %(refunds_from)s AND r.intent_created_at < %(refunds_to)s
              AND r.status = 'succeeded' {refunded_before}
              AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.refund_id = r.id
                              AND l.payment_created_at = r.intent_created_at AND l.kind = 'refund' OFFSET 0)
              AND {refund_not_held}
            UNION ALL
            SELECT 'refund', r.intent_id, r.id, NULL::bigint, r.intent_created_at, p.merchant_id, p.currency,
                   p.livemode, COALESCE(p.acquirer_id, m.sponsor_bank_id), -r.amount, {party_total},
                   -r.promotion_cost_returned, -r.cofunding_returned, {party_values}
            FROM {refund} r
            JOIN {payment} p ON p.id = r.intent_id AND p.created_at = r.intent_created_at
            JOIN {merchant} m ON m.id = p.merchant_id
            LEFT JOIN LATERAL (
              SELECT {party_pivot} FROM {fee} f WHERE f.refund_id = r.id AND f.payment_created_at = r.intent_created_at
            ) parts ON true
            WHERE (r.id, r.intent_created_at) IN (
              SELECT released.id, released.created_at FROM {released_refunds}
              WHERE released.merchant_id = ANY(%(merchants)s))
            """
        )
        # Disputes lost, accepted or expired: the amount debited, the promotions' cost and co-funding they handed
        # back as a refund's would be; no fee is handed back on a dispute.
        run(
            """
            INSERT INTO settle_items
            SELECT 'dispute', d.payment_id, NULL, d.id, p.created_at, p.merchant_id, p.currency, p.livemode,
                   COALESCE(p.acquirer_id, m.sponsor_bank_id), -d.amount, 0,
                   -d.promotion_cost_returned, -d.cofunding_returned, {party_values}
            FROM {dispute} d
            JOIN {payment} p ON p.id = d.payment_id AND p.created_at = d.payment_created_at
            JOIN {merchant} m ON m.id = p.merchant_id
            LEFT JOIN LATERAL (SELECT {party_pivot} FROM {fee} f WHERE false) parts ON true
            WHERE d.merchant_id = ANY(%(merchants)s) AND {dispute_due}
            """
        )
        cursor.execute("ANALYZE settle_items")  # temporary tables have no statistics until analysed
        # 2. A batch per merchant, currency and mode with something in it; one that exists already is left alone.
        run("CREATE TEMP TABLE settle_batches (id bigint, merchant_id bigint, currency varchar(3), livemode boolean)"
            " ON COMMIT DROP")  # fmt: skip
        batches = run(
            """
            WITH keys AS (
              SELECT merchant_id, currency, livemode FROM settle_items
              UNION
              SELECT b.merchant_id, b.currency, b.livemode FROM {batch} b
              WHERE b.merchant_id = ANY(%(merchants)s) AND {earlier_due}
                -- A reserve coming due makes a batch; a negative net alone does not: it waits for the merchant's
                -- next batch with something in it, instead of being carried on by an empty one each period.
                AND b.reserve_held > 0 AND b.reserve_release_on <= %(settle_on)s
            ), created AS (
              INSERT INTO {batch} (
                public_id, merchant_id, currency, livemode, cycle, period, cutoff_at, settle_on, status, hold_reason,
                payments_count, gross, refunds_count, refunds, fees, fee_total, fee_parties, promotion_charges,
                cofunding_credits, dispute_debits, reserve_held, reserve_release_on, reserve_released, carried_in,
                carried_out, net, created_at, settled_at)
              SELECT 'stl_' || translate(encode(uuid_send(gen_random_uuid())
                                                || substring(uuid_send(gen_random_uuid()) FROM 1 FOR 2), 'base64'),
                                         '+/', 'xy'),
                     k.merchant_id, k.currency, k.livemode, %(cycle)s, %(period)s, %(cutoff_at)s, %(settle_on)s,
                     'building', '', 0, 0, 0, 0, 0, 0, '{{}}'::jsonb, 0, 0, 0, 0, NULL, 0, 0, 0, 0, now(), NULL
              FROM keys k
              ORDER BY k.merchant_id, k.currency, k.livemode
              ON CONFLICT (merchant_id, currency, livemode, period) DO NOTHING
              RETURNING id, merchant_id, currency, livemode
            )
            INSERT INTO settle_batches SELECT id, merchant_id, currency, livemode FROM created
            """
        )
        cursor.execute("ANALYZE settle_batches")
        # 3. The lines: each payment and refund; each earlier batch's reserve due; each earlier negative net.
        lines = run(
            """
            INSERT INTO {line} (batch_id, kind, payment_id, refund_id, payment_created_at, dispute_id, source_id,
                                amount, fee, promotion_charge, cofunding_credit)
            SELECT sb.id, i.kind, i.payment_id, i.refund_id, i.payment_created_at, i.dispute_id, NULL, i.amount, i.fee,
                   i.promotion_charge, i.cofunding_credit
            FROM settle_items i JOIN settle_batches sb USING (merchant_id, currency, livemode)
            UNION ALL
            SELECT sb.id, 'carried', NULL, NULL, NULL, NULL, b.id, b.carried_out, 0, 0, 0
            FROM settle_batches sb JOIN {batch} b USING (merchant_id, currency, livemode)
            WHERE {earlier_due} AND b.status = 'carried' AND b.carried_out < 0
              AND NOT EXISTS (SELECT 1 FROM {line} x WHERE x.source_id = b.id AND x.kind = 'carried'
                              AND x.payment_created_at IS NULL)
            UNION ALL
            SELECT sb.id, 'reserve_release', NULL, NULL, NULL, NULL, b.id, b.reserve_held, 0, 0, 0
            FROM settle_batches sb JOIN {batch} b USING (merchant_id, currency, livemode)
            WHERE {earlier_due} AND b.reserve_held > 0 AND b.reserve_release_on <= %(settle_on)s
              AND NOT EXISTS (SELECT 1 FROM {line} x WHERE x.source_id = b.id AND x.kind = 'reserve_release'
                              AND x.payment_created_at IS NULL)
            """
        )
        # Each party's share of the fees, per batch and acquirer of record, from the fee splits behind the lines:
        # summed per batch, acquirer and the parties' banks first (a few hundred rows), then turned into a row per
        # party, so that a hundred thousand lines are not turned into four hundred thousand rows to be grouped.
        run(
            """
            CREATE TEMP TABLE settle_fee_parts ON COMMIT DROP AS
            SELECT i.batch_id, i.acquirer_id, part.party, part.bank_id, sum(part.amount)::bigint AS amount
            FROM (
              SELECT sb.id AS batch_id, i.acquirer_id, {party_banks}, {party_sums}
              FROM settle_items i JOIN settle_batches sb USING (merchant_id, currency, livemode)
              GROUP BY sb.id, i.acquirer_id, {party_banks}
            ) i
            CROSS JOIN LATERAL (VALUES {party_rows}) AS part (party, bank_id, amount)
            WHERE part.amount IS NOT NULL
            GROUP BY i.batch_id, i.acquirer_id, part.party, part.bank_id
            """
        )
        # 4. The totals, from the lines: the fee rounded once (half up) from hundredths; the reserve on the positive
        # net before reserves; the net; the status.
        run(
            """
            WITH sums AS (
              SELECT l.batch_id,
                     count(*) FILTER (WHERE l.kind = 'payment') AS payments_count,
                     COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'payment'), 0) AS gross,
                     count(*) FILTER (WHERE l.kind = 'refund') AS refunds_count,
                     COALESCE(-sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0) AS refunds,
                     COALESCE(-sum(l.amount) FILTER (WHERE l.kind = 'dispute'), 0) AS dispute_debits,
                     sum(l.fee) AS fees,
                     sum(l.promotion_charge) AS promotion_charges,
                     sum(l.cofunding_credit) AS cofunding_credits,
                     COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'reserve_release'), 0) AS reserve_released,
                     COALESCE(sum(l.amount) FILTER (WHERE l.kind = 'carried'), 0) AS carried_in
              FROM {line} l JOIN settle_batches sb ON sb.id = l.batch_id
              GROUP BY l.batch_id
            ), parties AS (
              SELECT batch_id, jsonb_object_agg(party, amount) AS fee_parties
              FROM (SELECT batch_id, party, sum(amount) AS amount FROM settle_fee_parts GROUP BY batch_id, party) x
              GROUP BY batch_id
            ), figures AS (
              SELECT s.*, rounded.fee_total, reserve.held AS reserve_held,
                     base.before_reserves - reserve.held + s.reserve_released AS net,
                     CASE WHEN reserve.held > 0 THEN terms.release_on END AS reserve_release_on,
                     m.payouts_frozen, m.frozen_reason
              FROM sums s
              JOIN settle_batches sb ON sb.id = s.batch_id
              JOIN {merchant} m ON m.id = sb.merchant_id
              LEFT JOIN {terms} ON terms.grade = m.risk_grade
              CROSS JOIN LATERAL (SELECT round(s.fees::numeric / 100)::bigint AS fee_total) rounded
              CROSS JOIN LATERAL (
                SELECT s.gross - s.refunds - rounded.fee_total - s.promotion_charges + s.cofunding_credits
                       - s.dispute_debits + s.carried_in AS before_reserves
              ) base
              CROSS JOIN LATERAL (
                SELECT CASE WHEN base.before_reserves > 0
                            THEN floor(base.before_reserves * COALESCE(terms.percent, 0) / 100)::bigint
                            ELSE 0 END AS held
              ) reserve
            )
            UPDATE {batch} b SET
              payments_count = f.payments_count, gross = f.gross, refunds_count = f.refunds_count,
              refunds = f.refunds, fees = f.fees, fee_total = f.fee_total,
              fee_parties = COALESCE(p.fee_parties, '{{}}'::jsonb), promotion_charges = f.promotion_charges,
              cofunding_credits = f.cofunding_credits, dispute_debits = f.dispute_debits,
              reserve_held = f.reserve_held,
              reserve_release_on = f.reserve_release_on, reserve_released = f.reserve_released,
              carried_in = f.carried_in, net = f.net,
              carried_out = CASE WHEN f.net <= 0 THEN f.net ELSE 0 END,
              status = CASE WHEN f.net <= 0 THEN 'carried' WHEN f.payouts_frozen THEN 'held' ELSE 'settled' END,
              hold_reason = CASE WHEN f.net > 0 AND f.payouts_frozen
                                 THEN left(COALESCE(NULLIF(f.frozen_reason, ''), %(frozen)s), 200) ELSE '' END,
              settled_at = now()
            FROM figures f LEFT JOIN parties p ON p.batch_id = f.batch_id
            WHERE b.id = f.batch_id
            """,
            terms=_terms_sql(terms),
        )
        # 5. 分账 per acquirer of record: the fee parties; the merchant its own payments' funds less their fees and
        # promotion charges (the lead acquirer — the sponsor bank when it is one — also the rest of the net:
        # reserve, releases, carries, rounding); the reserve, kept by the lead acquirer.
        run(
            """
            WITH own AS (
              SELECT sb.id AS batch_id, i.acquirer_id,
                     sum(i.amount * 100 - i.fee - i.promotion_charge * 100 + i.cofunding_credit * 100) AS part
              FROM settle_items i JOIN settle_batches sb USING (merchant_id, currency, livemode)
              GROUP BY sb.id, i.acquirer_id
            ), batches AS (
              SELECT b.id AS batch_id, b.status, b.net, b.reserve_held,
                     COALESCE(
                       (SELECT o.acquirer_id FROM own o WHERE o.batch_id = b.id AND o.acquirer_id = m.sponsor_bank_id),
                       (SELECT min(o.acquirer_id) FROM own o WHERE o.batch_id = b.id),
                       m.sponsor_bank_id) AS lead_id,
                     COALESCE((SELECT sum(o.part) FROM own o WHERE o.batch_id = b.id), 0) AS own_total
              FROM {batch} b JOIN settle_batches sb ON sb.id = b.id JOIN {merchant} m ON m.id = b.merchant_id
            ), merchant_parts AS (
              SELECT o.batch_id, o.acquirer_id, o.part FROM own o
              UNION ALL
              SELECT batch_id, lead_id, net * 100 - own_total FROM batches
            )
            INSERT INTO {split} (batch_id, acquirer_id, party, bank_id, amount)
            SELECT batch_id, acquirer_id, party, bank_id, amount FROM settle_fee_parts WHERE amount <> 0
            UNION ALL
            SELECT mp.batch_id, mp.acquirer_id, 'merchant', NULL, sum(mp.part)
            FROM merchant_parts mp JOIN batches b ON b.batch_id = mp.batch_id
            WHERE b.status IN ('settled', 'held')
            GROUP BY mp.batch_id, mp.acquirer_id HAVING sum(mp.part) <> 0
            UNION ALL
            SELECT batch_id, lead_id, 'reserve', NULL, reserve_held * 100 FROM batches WHERE reserve_held > 0
            """
        )
        for name in ("settle_items", "settle_batches", "settle_fee_parts"):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(name)))
    return batches, lines


def _terms_sql(terms: list[tuple[str, Any, dt.date]]) -> sql.Composable:
    """The reserve terms as a VALUES list aliased `terms (grade, percent, release_on)`."""
    if not terms:
        return sql.SQL("(SELECT NULL::varchar AS grade, 0::numeric AS percent, NULL::date AS release_on) terms")
    rows = sql.SQL(", ").join(
        sql.SQL("({}, {}::numeric, {}::date)").format(sql.Literal(grade), sql.Literal(str(percent)), sql.Literal(day))
        for grade, percent, day in terms
    )
    return sql.SQL("(VALUES {}) AS terms (grade, percent, release_on)").format(rows)
