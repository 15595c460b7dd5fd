"""Inter-bank clearing (清算): a business day's obligations in one currency netted multilaterally, one position per
party, rounded once to minor units summing to exactly zero, and settled through the clearing channel.

clearing_run      one day and currency: computing → netted → instructing → settled (or failed). Idempotent and
                  resumable: each stage is one database transaction that moves the run to the next status, and a run
                  of a day already past a stage skips it (a re-run of a finished day changes nothing).
clearing_due      every day up to yesterday with obligations and no finished netting, per currency (catch-up).
instructions_send `sent` committed before the channel is called, the call outside any transaction, the answer recorded
                  after it; no answer → an inquiry by the reference.
instructions_poll asks about instructions sent at least CLEARING_INQUIRE_AFTER_SECONDS ago: confirmed / failed; one the
                  channel never accepted is sent again under its reference. A run whose instructions are all confirmed
                  is `settled`; one with a failed instruction is `failed`.
instruction_resend an alliance operator sends a failed instruction again, under a new reference (the failed one stays
                  failed at the channel); the run is `instructing` again once none of its instructions is failed.

What is netted: every entry in the run's currency on the `clearing` accounts (banks, merchants) and the alliance's
`fees` account of the ledger transactions created on the business day (Asia/Shanghai): exchanges, funded points,
benefit redemptions, promotion co-funding and their reversals. A merchant's entries count toward its sponsor bank.
Fee splits are not in the ledger and are not netted: the acquirer of record pays them gross through the split
instructions at merchant settlement (docs/clearing.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.calendar import SHANGHAI, local_now
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.jobs import job_run
from core.money import exponent, round_to_zero_sum
from core.partitions import refuse_archived
from core.scoping import is_alliance_operator
from members.models import MemberBank
from merchants.models import Merchant
from rewards.models import CURRENCY_SCALE, Account, Entry, LedgerTransaction

from ..clearing_channel import Answer, InstructionRequest, Outcome, clearing_channel
from ..models import (
    ALLIANCE_PARTY,
    ClearingComponent,
    ClearingInstruction,
    ClearingPosition,
    ClearingRun,
    ComponentKind,
)

logger = logging.getLogger("alliance.clearing")

Status = ClearingRun.Status
InstructionStatus = ClearingInstruction.Status
CLEARING_PURPOSES = ("clearing", "fees")
CATCH_UP_DAYS = 31  # how far back `clearing_due` looks for a day never cleared


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The business day's half-open interval of ledger time: midnight to midnight in Asia/Shanghai."""
    start = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    return start, start + timedelta(days=1)


def per_minor(currency: str) -> int:
    """How many ledger units (ten-thousandths) make one minor unit: 100 for CNY (fen), 10000 for JPY."""
    return CURRENCY_SCALE // 10 ** exponent(currency)


def kind_sql(transactions: str = LedgerTransaction._meta.db_table) -> str:
    """The component kind of an entry `e` of account `a` and transaction `t`, from the transaction's kind and its side
    (see ComponentKind). A reversal of an exchange is told apart from other reversals (the revenue share reads the
    exchanges, reversals included, from here), reading what it reverses from `transactions` (the table, or a
    subquery adding its archived months)."""
    return f"""
CASE
  WHEN t.kind = 'exchange' AND a.owner_kind = 'alliance' THEN '{ComponentKind.EXCHANGE_FEE}'
  WHEN t.kind = 'exchange' AND e.amount < 0 THEN '{ComponentKind.EXCHANGE_OUT}'
  WHEN t.kind = 'exchange' THEN '{ComponentKind.EXCHANGE_IN}'
  WHEN t.kind IN ('earn', 'earn_batch') THEN '{ComponentKind.FUNDED_POINTS}'
  WHEN t.kind IN ('spend', 'hold_post') THEN '{ComponentKind.BENEFIT_REDEMPTION}'
  WHEN t.kind = 'cofunding' THEN '{ComponentKind.COFUNDING}'
  WHEN t.kind = 'reversal'
   AND (SELECT x.kind FROM {transactions} x
        WHERE x.id = t.reverses_id AND x.created_at = t.reverses_created_at) = 'exchange'
   THEN '{ComponentKind.EXCHANGE_REVERSAL}'
  WHEN t.kind = 'reversal' THEN '{ComponentKind.REVERSAL}'
  ELSE '{ComponentKind.OTHER}'
END"""  # noqa: S608 - table names from the models, or their archived months' subquery


def entries_sql() -> str:
    """The day's obligation entries (params: start, end, currency) with the party each counts toward: `bank_id` (the
    bank itself, or a merchant's sponsor; NULL for the alliance) and `merchant_id` (when carried for a merchant).
    Driven by the transactions' time index (`ledger_txn_created_at`), then their entries by transaction."""
    return f"""
        SELECT e.id AS entry_id, e.transaction_id, e.amount, t.kind AS txn_kind, t.created_at,
               {kind_sql()} AS component,
               CASE a.owner_kind WHEN 'bank' THEN a.owner_id WHEN 'merchant' THEN m.sponsor_bank_id END AS bank_id,
               CASE WHEN a.owner_kind = 'merchant' THEN a.owner_id END AS merchant_id
        FROM {LedgerTransaction._meta.db_table} t
        JOIN {Entry._meta.db_table} e ON e.transaction_id = t.id AND e.created_at = t.created_at
        JOIN {Account._meta.db_table} a ON a.id = e.account_id AND a.spread = e.spread
        LEFT JOIN {Merchant._meta.db_table} m ON a.owner_kind = 'merchant' AND m.id = a.owner_id
        WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
          AND e.created_at >= %(start)s AND e.created_at < %(end)s
          AND a.purpose IN ('clearing', 'fees') AND e.unit = %(currency)s
    """  # noqa: S608 - table names from the models


@dataclass
class ClearingReport:
    runs: int = 0
    netted: int = 0
    instructed: int = 0
    sent: int = 0
    in_flight: int = 0
    confirmed: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    settled_runs: int = 0

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


# --- the run -------------------------------------------------------------------------------------------------------


def clearing_run(day: date, currency: str = "CNY", *, echo: IO[str] | None = None) -> ClearingRun:
    """Clears `day` in `currency` (a day that has ended): nets it and makes its instructions. Resumes a run left in
    an earlier stage; a finished day is returned as it is. Two runs of one day and currency at once: the second is
    refused (`Conflict`, job_running) or, if it comes after, finds the stages done."""
    exponent(currency)
    if day >= local_now().date():
        raise ValidationFailed(_("A business day is cleared once it has ended."), code="day_not_over", param="day")
    if not ClearingRun.objects.filter(business_day=day, currency=currency).exclude(status=Status.COMPUTING).exists():
        # A day still to net reads its entries: none of them may be in an archived month.
        refuse_archived([Entry._meta.db_table, LedgerTransaction._meta.db_table], *day_bounds(day), param="day")
    with job_run("alliance.clearing", period=f"{day.isoformat()}:{currency}", total=2, echo=echo) as progress:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                    INSERT INTO {ClearingRun._meta.db_table} (business_day, currency, status, transactions_count,
                    entries_count, positions_count, instructions_count, gross, netted, error, created_at)
                    VALUES (%s, %s, %s, 0, 0, 0, 0, 0, 0, '', now())
                    ON CONFLICT (business_day, currency) DO NOTHING
                """,  # noqa: S608 - table names from the models
                [day, currency, Status.COMPUTING],
            )
        run = ClearingRun.objects.get(business_day=day, currency=currency)
        if run.status == Status.COMPUTING:
            run = _net(run)
        progress.advance(1, positions=run.positions_count)
        if run.status == Status.NETTED:
            run = _instruct(run)
        progress.advance(1, instructions=run.instructions_count)
    return run


def _net(run: ClearingRun) -> ClearingRun:
    """Stage 1, one transaction: components and positions by `INSERT … SELECT … GROUP BY` over the day's entries,
    the positions rounded once, the run `netted`. A crash rolls all of it back; the next run computes it again."""
    start, end = day_bounds(run.business_day)
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "currency": run.currency,
        "run": run.pk,
        "alliance": ALLIANCE_PARTY,
    }
    with transaction.atomic():
        run = ClearingRun.objects.select_for_update().get(pk=run.pk)
        if run.status != Status.COMPUTING:
            return run
        with connection.cursor() as cursor:
            # Dropped at commit; inside a caller's transaction (a savepoint) an earlier run's may still be there.
            cursor.execute("DROP TABLE IF EXISTS clearing_entries, clearing_parts")
            cursor.execute(
                f"CREATE TEMPORARY TABLE clearing_entries ON COMMIT DROP AS {entries_sql()}",
                params,
            )
            cursor.execute("SELECT count(DISTINCT transaction_id) FROM clearing_entries")
            transactions_count = cursor.fetchone()[0]
            cursor.execute(
                """
                    CREATE TEMPORARY TABLE clearing_parts ON COMMIT DROP AS
                    SELECT bank_id, merchant_id, component, count(*) AS n, sum(greatest(amount, 0)) AS receivable,
                           sum(greatest(-amount, 0)) AS payable, sum(amount) AS amount
                    FROM clearing_entries GROUP BY bank_id, merchant_id, component
                """
            )
            cursor.execute(
                f"""
                    INSERT INTO {ClearingPosition._meta.db_table}
                    (run_id, bank_id, party_code, receivable, payable, net, net_minor, rounding, entries_count)
                    SELECT %(run)s, p.bank_id, coalesce(b.code, %(alliance)s), sum(p.receivable), sum(p.payable),
                    sum(p.amount), 0, 0, sum(p.n)
                    FROM clearing_parts p LEFT JOIN {MemberBank._meta.db_table} b ON b.id = p.bank_id
                    GROUP BY p.bank_id, b.code
                """,  # noqa: S608 - table names from the models
                params,
            )
            cursor.execute(
                f"""
                    INSERT INTO {ClearingComponent._meta.db_table}
                    (run_id, position_id, bank_id, kind, merchant_id, count, receivable, payable, amount)
                    SELECT %(run)s, pos.id, p.bank_id, p.component, p.merchant_id, p.n, p.receivable, p.payable,
                    p.amount
                    FROM clearing_parts p JOIN {ClearingPosition._meta.db_table} pos
                    ON pos.run_id = %(run)s AND pos.bank_id IS NOT DISTINCT FROM p.bank_id
                """,  # noqa: S608 - table names from the models
                params,
            )
        positions = _round(run)
        run.transactions_count = transactions_count
        run.entries_count = sum(position.entries_count for position in positions)
        run.positions_count = len(positions)
        run.gross = sum(position.receivable for position in positions)
        run.netted = sum(position.net_minor for position in positions if position.net_minor > 0)
        run.status, run.netted_at = Status.NETTED, timezone.now()
        run.save()
        audit_record(actor=None, action="clearing.netted", obj=run, after={"positions": run.positions_count})
    return run


def party_order(position: ClearingPosition) -> tuple[int, str]:
    """The tie rule's order: member banks by code, then the alliance."""
    return (1 if position.bank_id is None else 0, position.party_code)


def _round(run: ClearingRun) -> list[ClearingPosition]:
    """Rounds the run's positions once, by largest remainder (`core.money.round_to_zero_sum`): every position goes
    to the floor of its exact value in minor units and the units that leaves over go one each to the largest
    remainders; equal remainders go in `party_order` (member code ascending, the alliance last)."""
    positions = sorted(ClearingPosition.objects.filter(run=run), key=party_order)
    scale = per_minor(run.currency)
    nets = [position.net for position in positions]
    if sum(nets) != 0:
        raise Conflict(
            _("The day's obligations do not sum to zero; the ledger needs checking (ledger_check)."),
            code="clearing_not_zero_sum",
        )
    rounded = round_to_zero_sum(nets, scale)
    for position, minor in zip(positions, rounded, strict=True):
        position.net_minor, position.rounding = minor, minor * scale - position.net
    ClearingPosition.objects.bulk_update(positions, ["net_minor", "rounding"])
    return positions


def instruction_reference(run: ClearingRun, party_code: str, *, resends: int = 0) -> str:
    """The channel's idempotency key of a position's instruction: its day, currency and party, and which resend."""
    reference = f"clr-{run.business_day:%Y%m%d}-{run.currency}-{party_code.replace('~', '')}"
    return f"{reference}-r{resends}" if resends else reference


def _instruct(run: ClearingRun) -> ClearingRun:
    """Stage 2, one transaction: an instruction per non-zero rounded position (a payer pays into the clearing
    channel, a receiver is paid out of it, under `instruction_reference`), the run `instructing` — or `settled` when
    nothing is to move."""
    day = run.business_day.strftime("%Y%m%d")
    with transaction.atomic():
        run = ClearingRun.objects.select_for_update().get(pk=run.pk)
        if run.status != Status.NETTED:
            return run
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                    INSERT INTO {ClearingInstruction._meta.db_table}
                    (run_id, position_id, bank_id, party_code, direction, amount, currency, reference, status,
                    attempts, resends, channel_id, channel_answer, failure_reason, created_at)
                    SELECT run_id, id, bank_id, party_code,
                    CASE WHEN net_minor < 0 THEN 'pay' ELSE 'receive' END, abs(net_minor), %(currency)s,
                    'clr-' || %(day)s || '-' || %(currency)s || '-' || replace(party_code, '~', ''), 'pending',
                    0, 0, '', '{{}}'::jsonb, '', now()
                    FROM {ClearingPosition._meta.db_table} WHERE run_id = %(run)s AND net_minor <> 0
                    ON CONFLICT (position_id) DO NOTHING
                """,  # noqa: S608 - table names from the models
                {"run": run.pk, "currency": run.currency, "day": day},
            )
            made = cursor.rowcount
        run.instructions_count = made
        run.status = Status.INSTRUCTING if made else Status.SETTLED
        if not made:
            run.settled_at = timezone.now()
        run.save(update_fields=["instructions_count", "status", "settled_at"])
    return run


def clearing_due(*, today: date | None = None, echo: IO[str] | None = None) -> list[ClearingRun]:
    """Clears every day up to yesterday that has obligations and whose run has not netted yet, oldest first, per
    currency (looking back CATCH_UP_DAYS). A run in progress elsewhere is left to it."""
    today = today or local_now().date()
    first = today - timedelta(days=CATCH_UP_DAYS)
    start, _end = day_bounds(first)
    _s, end = day_bounds(today - timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
                SELECT DISTINCT (t.created_at AT TIME ZONE 'Asia/Shanghai')::date AS day, e.unit
                FROM {LedgerTransaction._meta.db_table} t
                JOIN {Entry._meta.db_table} e ON e.transaction_id = t.id AND e.created_at = t.created_at
                JOIN {Account._meta.db_table} a ON a.id = e.account_id AND a.spread = e.spread
                WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
                  AND e.created_at >= %(start)s AND e.created_at < %(end)s AND a.purpose IN ('clearing', 'fees')
                ORDER BY 1, 2
            """,  # noqa: S608 - table names from the models
            {"start": start, "end": end},
        )
        candidates = cursor.fetchall()
    finished = set(
        ClearingRun.objects.filter(business_day__gte=first)
        .exclude(status__in=[Status.COMPUTING, Status.NETTED])
        .values_list("business_day", "currency")
    )
    runs = []
    for day, currency in candidates:
        if (day, currency) in finished:
            continue
        try:
            runs.append(clearing_run(day, currency, echo=echo))
        except Conflict as error:
            if error.code != "job_running":
                raise
            logger.info("clearing of %s %s is running elsewhere", day, currency)
    return runs


# --- instructions through the clearing channel ---------------------------------------------------------------------


def _claim(instruction_id: int, *, was: str, sent_at: datetime | None = None) -> ClearingInstruction | None:
    """Marks the instruction `sent` and commits before anyone calls the channel; None when another process took it."""
    with transaction.atomic():
        instruction = ClearingInstruction.objects.select_for_update().filter(pk=instruction_id, status=was).first()
        if instruction is None or (was == InstructionStatus.SENT and instruction.sent_at != sent_at):
            return None
        instruction.status, instruction.sent_at = InstructionStatus.SENT, timezone.now()
        instruction.attempts += 1
        instruction.save(update_fields=["status", "sent_at", "attempts"])
    return instruction


def _request(instruction: ClearingInstruction) -> InstructionRequest:
    return InstructionRequest(
        reference=instruction.reference,
        party=instruction.party_code.replace("~", ""),
        direction=instruction.direction,
        amount=instruction.amount,
        currency=instruction.currency,
    )


def _transmit(instruction: ClearingInstruction, report: ClearingReport) -> None:
    channel = clearing_channel()
    try:
        answer = channel.instruct(_request(instruction))
    except Exception:
        logger.exception("clearing instruction raised for %s", instruction.reference)
        answer = Answer(Outcome.UNKNOWN)
    if answer.outcome in (Outcome.UNKNOWN, Outcome.FAILED):
        answer = _inquire(instruction.reference)
    _record(instruction, answer, report)


def _inquire(reference: str) -> Answer:
    try:
        return clearing_channel().inquire(reference)
    except Exception:
        logger.exception("clearing inquiry raised for %s", reference)
        return Answer(Outcome.UNKNOWN)


def _record(instruction: ClearingInstruction, answer: Answer, report: ClearingReport) -> None:
    if answer.outcome == Outcome.DECLINED:
        _finish(instruction, InstructionStatus.FAILED, answer, report)
    elif answer.outcome != Outcome.ANSWERED:
        report.unknown += 1  # still `sent`: the poll asks again
    elif answer.state == "confirmed":
        _finish(instruction, InstructionStatus.CONFIRMED, answer, report)
    elif answer.state == "failed":
        _finish(instruction, InstructionStatus.FAILED, answer, report)
    elif answer.state == "not_found":
        # Never accepted: pending again, sent again under the same reference.
        if ClearingInstruction.objects.filter(
            pk=instruction.pk, status=InstructionStatus.SENT, sent_at=instruction.sent_at
        ).update(status=InstructionStatus.PENDING):
            report.retried += 1
    else:
        ClearingInstruction.objects.filter(pk=instruction.pk, status=InstructionStatus.SENT).update(
            channel_id=answer.channel_id, channel_answer=answer.body
        )
        report.in_flight += 1


def _finish(instruction: ClearingInstruction, status: str, answer: Answer, report: ClearingReport) -> None:
    """Confirmed or failed, once: a second answer for the same reference finds it finished and changes nothing. The
    run is `settled` with its last confirmation, `failed` with a failed instruction."""
    with transaction.atomic():
        run = ClearingRun.objects.select_for_update().get(pk=instruction.run_id)
        locked = (
            ClearingInstruction.objects.select_for_update()
            .filter(pk=instruction.pk, status__in=[InstructionStatus.SENT, InstructionStatus.PENDING])
            .first()
        )
        if locked is None:
            return
        locked.status, locked.finished_at = status, timezone.now()
        locked.channel_id = answer.channel_id or locked.channel_id
        locked.channel_answer = answer.body
        locked.failure_reason = answer.reason[:100] if status == InstructionStatus.FAILED else ""
        locked.save(update_fields=["status", "finished_at", "channel_id", "channel_answer", "failure_reason"])
        if status == InstructionStatus.FAILED:
            run.status, run.error = (
                Status.FAILED,
                _("Instruction %(reference)s failed: %(reason)s")
                % {
                    "reference": locked.reference,
                    "reason": locked.failure_reason or "-",
                },
            )
            run.save(update_fields=["status", "error"])
            report.failed += 1
            audit_record(actor=None, action="clearing.instruction_failed", obj=locked, reason=locked.failure_reason)
            return
        report.confirmed += 1
        open_left = run.instructions.exclude(status=InstructionStatus.CONFIRMED).exists()
        if run.status == Status.INSTRUCTING and not open_left:
            run.status, run.settled_at = Status.SETTLED, timezone.now()
            run.save(update_fields=["status", "settled_at"])
            report.settled_runs += 1


def instructions_send(*, limit: int = 500) -> ClearingReport:
    """Sends pending instructions, oldest run first."""
    report = ClearingReport()
    pending = ClearingInstruction.objects.filter(status=InstructionStatus.PENDING).order_by("run_id", "pk")
    for instruction_id in pending.values_list("pk", flat=True)[:limit]:
        instruction = _claim(instruction_id, was=InstructionStatus.PENDING)
        if instruction is None:
            continue
        report.sent += 1
        _transmit(instruction, report)
    return report


def instructions_poll(*, inquire_after: timedelta | None = None, limit: int = 500) -> ClearingReport:
    """Asks about instructions sent at least `inquire_after` ago; one the channel never accepted is sent again."""
    report = ClearingReport()
    wait = inquire_after if inquire_after is not None else timedelta(seconds=settings.CLEARING_INQUIRE_AFTER_SECONDS)
    due = ClearingInstruction.objects.filter(
        status=InstructionStatus.SENT, sent_at__lte=timezone.now() - wait
    ).order_by("sent_at")[:limit]
    for instruction in due:
        answer = _inquire(instruction.reference)
        if answer.outcome == Outcome.ANSWERED and answer.state == "not_found":
            claimed = _claim(instruction.pk, was=InstructionStatus.SENT, sent_at=instruction.sent_at)
            if claimed is not None:
                report.retried += 1
                _transmit(claimed, report)
            continue
        _record(instruction, answer, report)
    return report


def instruction_resend(*, instruction_id: int, operator: Any) -> ClearingInstruction:
    """A failed instruction goes out again: the same position and amount under a new reference (`…-r1`, `…-r2`), so
    the channel can never take it for the failed one. Pending now, the next poll sends it. Audited with the reference
    and the reason of the failure it replaces."""
    if not is_alliance_operator(operator) or not operator.has_perm("alliance.resend_clearinginstruction"):
        raise PermissionDenied(_("Only an alliance operator may send a clearing instruction again."))
    with transaction.atomic():
        found = ClearingInstruction.objects.filter(pk=instruction_id).values_list("run_id", flat=True).first()
        if found is None:
            raise NotFound(_("No such clearing instruction."), param="instruction")
        run = ClearingRun.objects.select_for_update().get(pk=found)
        instruction = ClearingInstruction.objects.select_for_update().get(pk=instruction_id)
        if instruction.status != InstructionStatus.FAILED:
            raise Conflict(_("Only a failed instruction is sent again."), code="instruction_not_failed")
        failed = {"reference": instruction.reference, "reason": instruction.failure_reason}
        instruction.resends += 1
        instruction.reference = instruction_reference(run, instruction.party_code, resends=instruction.resends)
        instruction.status = InstructionStatus.PENDING
        instruction.channel_id, instruction.channel_answer, instruction.failure_reason = "", {}, ""
        instruction.sent_at = instruction.finished_at = None
        instruction.save(
            update_fields=[
                "resends",
                "reference",
                "status",
                "channel_id",
                "channel_answer",
                "failure_reason",
                "sent_at",
                "finished_at",
            ]
        )
        if run.status == Status.FAILED and not run.instructions.filter(status=InstructionStatus.FAILED).exists():
            run.status, run.error = Status.INSTRUCTING, ""
            run.save(update_fields=["status", "error"])
        audit_record(
            actor=operator,
            action="clearing.instruction_resend",
            obj=instruction,
            before=failed,
            after={"reference": instruction.reference},
        )
    return instruction


def clearing_daily(*, echo: IO[str] | None = None) -> ClearingReport:
    """The daily job: every day due is cleared, then the instructions sent."""
    report = ClearingReport()
    runs = clearing_due(echo=echo)
    report.runs = len(runs)
    sent = instructions_send()
    for name in ("sent", "in_flight", "confirmed", "failed", "retried", "unknown", "settled_runs"):
        setattr(report, name, getattr(report, name) + getattr(sent, name))
    return report


def run_summary(run: ClearingRun) -> dict[str, Any]:
    return {
        "day": run.business_day.isoformat(),
        "currency": run.currency,
        "status": run.status,
        "positions": run.positions_count,
        "instructions": run.instructions_count,
    }
