"""Payment intents: create, confirm, capture, cancel (void, 撤销), refund (退货) — and the jobs that resolve the rest.

State is committed before and after every channel call, so a crash between the two leaves an attempt in `pending`
that `attempts_resolve` settles by inquiry. A timeout is never a decline: it is resolved by inquiry, then by
reversal (冲正), before anything else happens. A capture happens once: the transition out of `requires_capture` is a
guarded UPDATE that only one request can win.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F
from django.utils import timezone

from core import idempotency
from core.audit import audit_record, snapshot
from core.calendar import business_date, local_now
from core.db import commits_alone, execute, insert, insert_if, new_row, saved
from core.errors import ChannelError, Conflict, NotFound, ValidationFailed
from core.idempotency import progress_statement, record_progress, resumed, run_idempotent
from core.money import validate_minor_amount
from members.models import BindingStatus, Card, Cardholder, LinkedAccount, MemberBank, PointsProgram
from merchants.models import Merchant

from . import fees, ledger_bridge, methods, risk, routing
from . import points as payment_points
from .connectors import get_connector
from .connectors.base import (
    AuthorizeRequest,
    CaptureRequest,
    ChannelResponse,
    Inquiry,
    Outcome,
    ReferenceRequest,
    RefundRequest,
    RemoteState,
)
from .health import BreakerPolicy, BreakerState, HealthStore, health_store
from .models import (
    Channel,
    PaymentAttempt,
    PaymentIntent,
    PaymentMethod,
    Refund,
    RiskDecision,
    RiskOutcome,
    RoutingDecision,
    RoutingRule,
    RuleChannel,
)

logger = logging.getLogger(__name__)

Status = PaymentIntent.Status
AttemptStatus = PaymentAttempt.Status
UNRESOLVED = PaymentAttempt.UNRESOLVED
MAX_ATTEMPTS = 3
RISK_REVIEW_WINDOW = timedelta(hours=getattr(settings, "PAYMENTS_RISK_REVIEW_HOURS", 24))
CHARGED_STATES = (RemoteState.AUTHORIZED, RemoteState.CAPTURED)


def _scope(merchant: Merchant, livemode: bool) -> str:
    # Test-mode idempotency keys never meet live ones; live keeps the scope it always had.
    return f"merchant:{merchant.pk}" if livemode else f"merchant:{merchant.pk}:test"


def _load(public_id: str, merchant: Merchant, livemode: bool) -> PaymentIntent:
    """The merchant's payment in this mode: another mode's payment is not found, like another merchant's."""
    try:
        return PaymentIntent.objects.select_related(
            "channel", "card__product", "merchant", "linked_account", "payment_code"
        ).get(public_id=public_id, merchant=merchant, livemode=livemode)
    except PaymentIntent.DoesNotExist:
        raise NotFound("No such payment.", param="payment") from None


# --- create -------------------------------------------------------------------------------------------------------


def payment_create(
    *,
    merchant: Merchant,
    amount: int,
    currency: str,
    idempotency_key: str,
    cardholder: Cardholder | None = None,
    card: Card | None = None,
    method: str = PaymentMethod.CARD,
    capture_method: str = PaymentIntent.CaptureMethod.AUTOMATIC,
    description: str = "",
    merchant_reference: str = "",
    metadata: dict[str, Any] | None = None,
    confirm: bool = False,
    device_id: str = "",
    linked_account: LinkedAccount | None = None,
    payment_code: str = "",
    agreement_token: str = "",
    use_points: int = 0,
    livemode: bool = True,
) -> PaymentIntent:
    """A payment from a card on file (`card`), a linked balance (`linked_account`), a payment code the cardholder
    shows (`payment_code`, no cardholder needed) or a standing agreement with this merchant (`agreement_token`).

    `livemode` False makes a test-mode payment (a test API key's), seen only in test mode."""
    request = {
        "cardholder": cardholder.pk if cardholder else None,
        "card": card.pk if card else None,
        "amount": amount,
        "currency": currency,
        "method": method,
        "capture_method": capture_method,
        "description": description,
        "merchant_reference": merchant_reference,
        "metadata": metadata or {},
        "confirm": confirm,
    }
    extra = {
        "device_id": device_id,
        "linked_account": linked_account.pk if linked_account else None,
        "payment_code": payment_code,
        "agreement_token": agreement_token,
        "use_points": use_points,
    }
    request.update({name: value for name, value in extra.items() if value})

    executed: list[PaymentIntent] = []

    def execute() -> dict[str, Any]:
        earlier = resumed()
        if earlier and earlier.get("payment"):
            # An earlier run of this key wrote the payment (and may have had it charged), then stopped: carry on
            # with that payment, never make a second one.
            intent = _load(earlier["payment"], merchant, livemode)
            if confirm and intent.status == Status.REQUIRES_CONFIRMATION:
                _confirm(intent)
            executed.append(intent)
            return {"payment": intent.public_id}
        intent = _create(
            merchant=merchant,
            cardholder=cardholder,
            card=card,
            amount=amount,
            currency=currency,
            method=method,
            capture_method=capture_method,
            description=description,
            merchant_reference=merchant_reference,
            metadata=metadata or {},
            device_id=device_id,
            linked_account=linked_account,
            payment_code=payment_code,
            agreement_token=agreement_token,
            use_points=use_points,
            livemode=livemode,
            write=not confirm,  # confirming at once: the row may be written by the start's statement
        )
        if confirm:
            _confirm(intent)
        executed.append(intent)
        return {"payment": intent.public_id}

    outcome = run_idempotent(
        scope=_scope(merchant, livemode),
        key=idempotency_key,
        operation="payment.create",
        request=request,
        execute=execute,
    )
    if executed:
        return executed[0]  # ran now: the object is current; a replay loads the stored payment
    return _load(outcome["payment"], merchant, livemode)


_METHODS, _CAPTURE_METHODS = frozenset(PaymentMethod.values), frozenset(PaymentIntent.CaptureMethod.values)


def _create(
    *,
    merchant: Merchant,
    cardholder: Cardholder | None,
    card: Card | None,
    amount: int,
    currency: str,
    method: str,
    capture_method: str,
    description: str,
    merchant_reference: str,
    metadata: dict[str, Any],
    device_id: str = "",
    linked_account: LinkedAccount | None = None,
    payment_code: str = "",
    agreement_token: str = "",
    use_points: int = 0,
    livemode: bool = True,
    write: bool = True,
) -> PaymentIntent:
    """A new payment awaiting confirmation. With `write` False, on PostgreSQL, a payment that needs nothing else
    written with it (no agreement, no points) is left unwritten for `_confirm` to write in the start's statement (one
    row version fewer: it is born processing); anything else that needs the row writes it first (`_ensure_written`)."""
    validate_minor_amount(amount, currency)
    if isinstance(use_points, bool) or not isinstance(use_points, int) or use_points < 0:
        raise ValidationFailed("use_points is a whole number of points.", code="invalid_points", param="use_points")
    if method not in _METHODS:
        raise ValidationFailed(f"Unknown payment method {method!r}.", code="invalid_method", param="method")
    if capture_method not in _CAPTURE_METHODS:
        raise ValidationFailed("capture_method is automatic or manual.", code="invalid_capture_method")
    if merchant.status != Merchant.Status.ACTIVE:
        raise ValidationFailed("This merchant cannot take payments.", code="merchant_inactive", param="merchant")
    if sum(bool(source) for source in (card or linked_account, payment_code, agreement_token)) > 1:
        raise ValidationFailed(
            "Give one of a card or account, a payment code or an agreement.", code="funding_source_ambiguous"
        )
    if not (payment_code or agreement_token):
        if cardholder is None:
            raise ValidationFailed("Which cardholder pays?", code="parameter_missing", param="cardholder")
        if card is not None:
            if card.cardholder_id != cardholder.pk:
                raise NotFound("No such card.", param="card")
            _require_usable_card(card)
        if linked_account is not None:
            if linked_account.cardholder_id != cardholder.pk:
                raise NotFound("No such account.", param="linked_account")
            methods.require_usable_account(linked_account)
            method = PaymentMethod.BALANCE
        elif method == PaymentMethod.BALANCE:
            raise ValidationFailed(
                "A balance payment needs a linked account.", code="parameter_missing", param="linked_account"
            )
    # Taking a code or agreement and holding points must stand or fall with the payment row (a code alone is taken by
    # the statement that writes the row).
    funding = methods.payment_code_find(payment_code) if payment_code else None  # a read: nothing taken yet
    wants_points = bool(use_points or (funding and funding.payment_code and funding.payment_code.use_points))
    with transaction.atomic() if (agreement_token or wants_points) else nullcontext():
        code = agreement = None
        if payment_code or agreement_token:
            if funding is None:
                funding = methods.agreement_take(agreement_token, merchant=merchant, amount=amount, currency=currency)
            if cardholder is not None and cardholder.pk != funding.cardholder.pk:
                raise NotFound("No such payment code or agreement.", code="funding_source_invalid")
            cardholder, card, linked_account = funding.cardholder, funding.card, funding.linked_account
            method, code, agreement = funding.method, funding.payment_code, funding.agreement
        assert cardholder is not None
        issuer = card.bank_id if card else linked_account.bank_id if linked_account else None
        if use_points and not livemode:
            raise ValidationFailed(
                "Points cannot pay for a test-mode payment: a cardholder's points are real.",
                code="points_not_available",
                param="use_points",
            )
        points, points_amount, program = _points_part(
            cardholder, issuer, amount, currency, use_points, wants_most=bool(code and code.use_points and livemode)
        )
        intent = PaymentIntent(
            merchant=merchant,
            cardholder=cardholder,
            card=card,
            linked_account=linked_account,
            payment_code=code,
            agreement=agreement,
            method=method,
            amount=amount - points_amount,
            points_used=points,
            points_amount=points_amount,
            currency=currency,
            capture_method=capture_method,
            issuer_id=issuer,
            spend_category=merchant.spend_category,
            description=description[:200],
            merchant_reference=merchant_reference[:64],
            metadata=metadata,
            device_id=device_id[:64],
            livemode=livemode,
        )
        # The payment row: one prepared INSERT, compiled once (no save() hooks on payments); by a code, the same
        # statement takes the code, and a code taken meanwhile by another request writes nothing.
        guard = _RowGuard(*methods.payment_code_use(funding), funding) if code is not None and funding else None
        if not write and not points and agreement is None and connection.vendor == "postgresql":
            intent.__dict__[_UNWRITTEN] = guard
        else:
            _write_row(intent, guard)
        if points:
            assert program is not None
            intent.points_hold_id = ledger_bridge.spend_hold(
                intent=intent,
                program=program,
                points=points,
                expires_at=timezone.now() + timedelta(days=payment_points.POINTS_HOLD_VALIDITY_DAYS),
            )
            intent.save(update_fields=["points_hold"])
    intent.card, intent.merchant = card, merchant
    return intent


@dataclass(frozen=True)
class _RowGuard:
    """What a payment's row must take as it is written (the code it is paid by): a guard for `insert_if`."""

    sql: str
    params: list[Any]
    funding: methods.Funding


_UNWRITTEN = "_mengka_unwritten_row"  # on a payment `_create` left unwritten: its guard (or None)
_ASSESSED = "_mengka_risk_assessment"  # on a payment its risk check counted: what to take back if it cannot go on


def _write_row(intent: PaymentIntent, guard: _RowGuard | None) -> None:
    """Writes the row (taking its code, if any) and, under an idempotency key, records it as the key's progress in the
    same transaction (`core.idempotency`): a retry after an unexpected error resumes with this payment. Inside the
    caller's transaction (an agreement, points) it is part of that one: no savepoint."""
    with transaction.atomic(savepoint=False):
        if guard is None:
            insert([intent])
            written = True
        else:
            written = insert_if(intent, guard.sql, guard.params)
        if written:
            record_progress(_progress_of(intent))
    if guard is not None and not written:  # refused outside the block: a caller's transaction stays usable
        raise _code_lost(intent, guard)


def _code_lost(intent: PaymentIntent, guard: _RowGuard) -> Exception:
    """The refusal of a payment whose code another till took first (between the read of the code and the statement
    that takes it); the payment, never written, is taken back out of the velocity counters it was counted in."""
    assessment = intent.__dict__.pop(_ASSESSED, None)
    if assessment is not None:
        risk.uncount(assessment)
    return methods.payment_code_lost(guard.funding)


def _progress_of(intent: PaymentIntent) -> dict[str, Any]:
    return {"payment": intent.public_id}


def _ensure_written(intent: PaymentIntent) -> None:
    """Writes a payment `_create` left unwritten, before anything that needs its row."""
    if intent.pk is None:
        _write_row(intent, intent.__dict__.pop(_UNWRITTEN))


def _points_part(
    cardholder: Cardholder, issuer: int | None, amount: int, currency: str, points: int, *, wants_most: bool
) -> tuple[int, int, PointsProgram | None]:
    """(points, their value in minor units, programme) for paying part of `amount` with the issuer's points."""
    if not points and not wants_most:
        return 0, 0, None
    program = payment_points.program_of_bank(issuer)
    if program is None or currency != "CNY":
        if wants_most and not points:
            return 0, 0, None
        raise ValidationFailed(
            "Points can pay only for CNY payments from a member that runs a points programme.",
            code="points_not_available",
            param="use_points",
        )
    if not points:
        points = payment_points.points_affordable(cardholder_id=cardholder.pk, program=program, amount=amount)
        if not points:
            return 0, 0, None
    value = payment_points.points_value(points, program)
    if value <= 0:
        raise ValidationFailed("Too few points to pay for anything.", code="points_too_few", param="use_points")
    if value >= amount:
        raise ValidationFailed(
            "Points can pay for all but 0.01 of a payment.", code="points_exceed_amount", param="use_points"
        )
    return points, value, program


def _require_usable_card(card: Card) -> None:
    if card.status != BindingStatus.ACTIVE:
        raise ValidationFailed("This card cannot be used: it is not active.", code="card_not_active", param="card")
    today = local_now().date()
    if (card.expiry_year, card.expiry_month) < (today.year, today.month):
        raise ValidationFailed("This card has expired.", code="card_expired", param="card")


# --- confirm ------------------------------------------------------------------------------------------------------


def payment_confirm(
    *, merchant: Merchant, payment_id: str, idempotency_key: str, livemode: bool = True
) -> PaymentIntent:
    def execute() -> dict[str, Any]:
        _confirm(_load(payment_id, merchant, livemode))
        return {"payment": payment_id}

    run_idempotent(
        scope=_scope(merchant, livemode),
        key=idempotency_key,
        operation="payment.confirm",
        request={"payment": payment_id},
        execute=execute,
    )
    return _load(payment_id, merchant, livemode)


def _confirm(intent: PaymentIntent) -> None:
    if intent.status != Status.REQUIRES_CONFIRMATION:
        raise Conflict(f"A payment in status {intent.status} cannot be confirmed.", code="payment_unexpected_state")
    if intent.card is not None:
        _require_usable_card(intent.card)
    if intent.linked_account is not None:
        methods.require_usable_account(intent.linked_account)
    config, health = routing.load_config(), health_store()
    context = routing.context_for(intent, local_now().time())
    screened = routing.screen(context, config)
    # The breakers routing will ask for are read in the risk counters' round trip.
    risk_fields = _risk_check(intent, breakers=(health, screened.breakers_to_read()))
    if risk_fields is None:
        return
    breakers = intent.__dict__[_ASSESSED].breakers
    decision = routing.decide(context, config, health, screened=screened, breakers=breakers)
    if not decision.order:
        _ensure_written(intent)
        _record_decision(intent, decision)
        PaymentIntent.objects.filter(pk=intent.pk).update(**risk_fields)
        _fail(intent, "no_channel", "No channel can carry this payment.")
        return
    order = iter(decision.order)

    def next_channel() -> routing.ChannelInfo | None:
        # The breaker may have opened since the decision, or its half-open probe may be taken.
        return next((info for info in order if health.allow(info.code, info.breaker)), None)

    first = decision.order[0]
    breaker = decision.breakers.get(first.code) or health.state(first.code, first.breaker)  # as the decision saw it
    if connection.vendor == "postgresql" and breaker == BreakerState.CLOSED:
        # The usual case in one statement: a closed breaker lets the first channel through with nothing to take.
        channel = config.channel_models[first.id]
        attempt: PaymentAttempt | None = _start_processing(intent, decision, risk_fields, channel)
        info: routing.ChannelInfo | None = next(order)
    else:
        _ensure_written(intent)
        _record_decision(intent, decision)
        _move_to_processing(intent, risk_fields)
        attempt, info = None, next_channel()  # only the request that won the payment may take a half-open probe
    tried = 0
    while info is not None:
        tried += 1
        if attempt is None:
            attempt = _new_attempt(intent, config.channel_models[info.id], sequence=tried)
        response = _call_authorize(intent, attempt)
        deferred = connection.vendor == "postgresql"  # the approval is written with the finish, in one statement
        result = _settle_authorize(attempt, response, defer_approval=deferred)
        channel_failed = result in (AttemptStatus.FAILED, AttemptStatus.REVERSED, *UNRESOLVED)
        health.record(info.code, intent.method, not channel_failed, info.breaker)
        if result in (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED):
            _finish_authorized(intent, attempt, captured=result == AttemptStatus.CAPTURED, attempt_unsaved=deferred)
            return
        if result == AttemptStatus.DECLINED:
            _fail(intent, attempt.error_code or "card_declined", attempt.error_message or "The card was declined.")
            return
        if result in UNRESOLVED:
            # Not known either way: no other channel may try until attempts_resolve settles this one.
            return
        if not config.retry_allowed(info.id, attempt.error_code):
            _fail(intent, attempt.error_code or "channel_error", "The channel failed and the error is not retried.")
            return
        # FAILED or REVERSED: known not to have charged, and the policy allows the next channel to try.
        attempt = None
        info = next_channel() if tried < MAX_ATTEMPTS else None
    _fail(intent, "channels_unavailable", "No channel could process the payment.")


def _risk_check(
    intent: PaymentIntent, *, breakers: tuple[HealthStore, list[tuple[str, BreakerPolicy]]] | None = None
) -> dict[str, Any] | None:
    """The risk outcome to store on the payment (with its move to processing); a block fails the payment at once
    (None). A review lets it be authorised and holds it there. `breakers`: see `risk.assess`."""
    assessment = risk.assess(intent, breakers=breakers)
    intent.__dict__[_ASSESSED] = assessment
    intent.risk_outcome, intent.risk_reasons = assessment.outcome, assessment.reasons
    intent.risk_review = assessment.outcome == RiskOutcome.REVIEW
    fields = {
        "risk_outcome": intent.risk_outcome,
        "risk_reasons": intent.risk_reasons,
        "risk_review": intent.risk_review,
    }
    if assessment.outcome == RiskOutcome.BLOCK:
        _ensure_written(intent)
        PaymentIntent.objects.filter(pk=intent.pk).update(**fields)
        _fail(intent, "risk_blocked", f"Refused by risk checks: {assessment.message}")
        return None
    return fields


def _record_decision(intent: PaymentIntent, decision: routing.Decision) -> None:
    RoutingDecision.objects.create(
        intent=intent,
        rule_id=decision.rule_id,
        rule_name=decision.rule_name,
        strategy=decision.strategy,
        candidates=[candidate.as_dict() for candidate in decision.candidates],
        chosen=decision.chosen_codes,
        explored=decision.explored,
        decided_in_us=decision.decided_in_us,
    )


# On PostgreSQL the routing decision, the move to processing and the first attempt go in one statement (one round
# trip, one commit, before the channel is called). The column lists are checked against the models by a test.
DECISION_COLUMNS = (
    "intent_id", "rule_id", "rule_name", "strategy", "candidates", "chosen", "explored", "decided_in_us", "created_at",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "intent_id", "sequence", "channel_id", "reference", "status", "amount", "currency", "channel_reference",
    "error_code", "error_message", "latency_ms", "created_at", "resolved_at",
)  # fmt: skip
_DECISION_VALUES = (
    "%(rule)s, %(rule_name)s, %(strategy)s, %(candidates)s::jsonb, %(chosen)s::jsonb, %(explored)s, %(decided_in_us)s,"
    " %(now)s"
)
_ATTEMPT_VALUES = (
    "1, %(channel)s, %(reference)s, %(pending)s, %(amount)s, %(currency)s, '', '', '', NULL, %(now)s, NULL"
)
_START_SQL = f"""
WITH decision AS (
    INSERT INTO {RoutingDecision._meta.db_table} ({", ".join(DECISION_COLUMNS)})
    VALUES (%(intent)s, {_DECISION_VALUES})
), processing AS (
    UPDATE {PaymentIntent._meta.db_table}
       SET status = %(processing)s, updated_at = %(now)s, risk_outcome = %(risk_outcome)s,
           risk_reasons = %(risk_reasons)s::jsonb, risk_review = %(risk_review)s
     WHERE id = %(intent)s AND status = %(requires_confirmation)s
    RETURNING id
)
INSERT INTO {PaymentAttempt._meta.db_table} ({", ".join(ATTEMPT_COLUMNS)})
SELECT id, {_ATTEMPT_VALUES}
  FROM processing
RETURNING intent_id, id
"""  # noqa: S608 (table names from the models, values as parameters)


@functools.cache
def _start_new_sql(table: str, columns: tuple[str, ...], guard: str | None, progress: str | None) -> str:
    """The start for a payment `_create` left unwritten: its row is written, born processing, by the same statement
    (and, paid by a code, only if the statement takes the code: `guard`, its placeholders named `%(g<n>)s`), and
    recorded as its idempotency key's progress if it was written (`progress`, placeholders `%(p<n>)s`)."""
    values = ", ".join(f"%(c{n})s" for n in range(len(columns)))
    head = f"WITH guard AS ({guard}), " if guard else "WITH "
    source = " FROM (SELECT 1 FROM guard LIMIT 1) AS taken" if guard else ""
    recorded = f"), progress AS (\n    {progress} AND EXISTS (SELECT 1 FROM payment)" if progress else ""  # noqa: S608 (our own statement)
    return f"""
{head}payment AS (
    INSERT INTO {table} ({", ".join(columns)}) SELECT {values}{source}
    RETURNING id
{recorded}), decision AS (
    INSERT INTO {RoutingDecision._meta.db_table} ({", ".join(DECISION_COLUMNS)})
    SELECT id, {_DECISION_VALUES} FROM payment
)
INSERT INTO {PaymentAttempt._meta.db_table} ({", ".join(ATTEMPT_COLUMNS)})
SELECT id, {_ATTEMPT_VALUES}
  FROM payment
RETURNING intent_id, id
"""  # noqa: S608 (table and columns from the models, the guard from methods, values as parameters)


def _named(sql: str, prefix: str) -> str:
    """A statement's positional placeholders as `%(<prefix>0)s`, `%(<prefix>1)s` …, to sit in a statement of named
    ones."""
    assert "%(" not in sql
    numbers = iter(range(sql.count("%s")))
    return re.sub(r"%s", lambda _match: f"%({prefix}{next(numbers)})s", sql)


def _move_to_processing(intent: PaymentIntent, risk_fields: dict[str, Any]) -> None:
    won = PaymentIntent.objects.filter(pk=intent.pk, status=Status.REQUIRES_CONFIRMATION).update(
        status=Status.PROCESSING, updated_at=timezone.now(), **risk_fields
    )
    if not won:
        raise Conflict("This payment is being confirmed by another request.", code="payment_unexpected_state")
    intent.status = Status.PROCESSING


def _start_processing(
    intent: PaymentIntent, decision: routing.Decision, risk_fields: dict[str, Any], channel: Channel
) -> PaymentAttempt:
    """PostgreSQL: records the decision, moves the payment to processing (only the request that finds it awaiting
    confirmation may) and opens the first attempt on `channel` — one statement, committed before the channel is
    called."""
    now = timezone.now()
    reference = _attempt_reference(intent, 1)
    params = {
        "intent": intent.pk,
        "rule": decision.rule_id,
        "rule_name": decision.rule_name,
        "strategy": decision.strategy,
        "candidates": json.dumps([candidate.as_dict() for candidate in decision.candidates]),
        "chosen": json.dumps(decision.chosen_codes),
        "explored": decision.explored,
        "decided_in_us": decision.decided_in_us,
        "now": now,
        "processing": Status.PROCESSING,
        "requires_confirmation": Status.REQUIRES_CONFIRMATION,
        "risk_outcome": risk_fields["risk_outcome"],
        "risk_reasons": json.dumps(risk_fields["risk_reasons"]),
        "risk_review": risk_fields["risk_review"],
        "channel": channel.pk,
        "reference": reference,
        "pending": AttemptStatus.PENDING,
        "amount": intent.amount,
        "currency": intent.currency,
    }
    guard: _RowGuard | None = None
    sql = _START_SQL
    if intent.pk is None:  # written here, born processing with its risk outcome
        guard = intent.__dict__.pop(_UNWRITTEN)
        intent.status, intent.updated_at = Status.PROCESSING, now
        for name, value in risk_fields.items():
            setattr(intent, name, value)
        table, columns, values = new_row(intent)
        progress = progress_statement(_progress_of(intent))
        sql = _start_new_sql(
            table,
            tuple(columns),
            _named(guard.sql, "g") if guard else None,
            _named(progress[0], "p") if progress else None,
        )
        params.update({f"c{n}": value for n, value in enumerate(values)})
        if guard is not None:
            params.update({f"g{n}": value for n, value in enumerate(guard.params)})
        if progress is not None:
            params.update({f"p{n}": value for n, value in enumerate(progress[1])})
    with connection.cursor() as cursor:
        execute(cursor, sql, params)
        row = cursor.fetchone()
    if row is None:
        if guard is not None:  # another request took the code first: nothing was written
            raise _code_lost(intent, guard)
        raise Conflict("This payment is being confirmed by another request.", code="payment_unexpected_state")
    if intent.pk is None:
        saved(intent, row[0])
    intent.status = Status.PROCESSING
    attempt = PaymentAttempt(
        id=row[1],
        intent=intent,
        sequence=1,
        channel=channel,
        reference=reference,
        status=AttemptStatus.PENDING,
        amount=intent.amount,
        currency=intent.currency,
        created_at=now,
    )
    attempt._state.adding, attempt._state.db = False, "default"
    return attempt


def _attempt_reference(intent: PaymentIntent, sequence: int) -> str:
    return f"{intent.public_id}-{sequence}"


def _new_attempt(intent: PaymentIntent, channel: Channel, *, sequence: int) -> PaymentAttempt:
    """Committed before the channel is called. A confirmation starts from no attempts, so `sequence` is the try."""
    return PaymentAttempt.objects.create(
        intent=intent,
        sequence=sequence,
        channel=channel,
        reference=_attempt_reference(intent, sequence),
        amount=intent.amount,
        currency=intent.currency,
    )


def _call_authorize(intent: PaymentIntent, attempt: PaymentAttempt) -> ChannelResponse:
    channel = attempt.channel
    connector = get_connector(channel.connector)
    source_token, instrument = _instrument(intent)
    started = time.monotonic()
    try:
        response = connector.authorize(
            AuthorizeRequest(
                channel=channel.remote_id or channel.code,
                reference=attempt.reference,
                amount=attempt.amount,
                currency=attempt.currency,
                method=intent.method,
                source_token=source_token,
                instrument=instrument,
                capture=intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC and not intent.risk_review,
                merchant_code=intent.merchant.code,
                description=intent.description,
            )
        )
    except Exception:
        logger.exception("authorize raised for attempt %s", attempt.reference)
        response = ChannelResponse(Outcome.UNKNOWN, code="connector_exception")
    attempt.latency_ms = int((time.monotonic() - started) * 1000)  # saved with the outcome
    return response


def _instrument(intent: PaymentIntent) -> tuple[str, str]:
    """What the channel charges: the linked account (a hold), the payment code, or the card token."""
    if intent.linked_account is not None:
        return intent.linked_account.reference, "account"
    if intent.payment_code is not None:
        return intent.payment_code.code, "code"
    return (intent.card.token if intent.card else ""), "card"


def _settle_authorize(attempt: PaymentAttempt, response: ChannelResponse, *, defer_approval: bool = False) -> str:
    """Records what the channel said; an UNKNOWN is resolved by inquiry, then reversal, at once. With
    `defer_approval`, an approval is only set on the object: the caller writes it with the payment's finish."""
    if response.outcome == Outcome.APPROVED:
        status = AttemptStatus.CAPTURED if response.state == RemoteState.CAPTURED else AttemptStatus.AUTHORIZED
        _update_attempt(attempt, status, response.channel_reference, "", "", save=not defer_approval)
    elif response.outcome == Outcome.DECLINED:
        _update_attempt(attempt, AttemptStatus.DECLINED, "", response.code, response.message)
    elif response.outcome == Outcome.FAILED:
        _update_attempt(attempt, AttemptStatus.FAILED, "", response.code, response.message)
    else:
        _update_attempt(attempt, AttemptStatus.UNKNOWN, "", response.code or "timeout", response.message)
        _resolve_attempt(attempt)
    return attempt.status


ATTEMPT_OUTCOME_FIELDS = ("status", "channel_reference", "error_code", "error_message", "resolved_at", "latency_ms")


def _update_attempt(
    attempt: PaymentAttempt, status: str, channel_reference: str, code: str, message: str, *, save: bool = True
) -> None:
    attempt.status = status
    attempt.channel_reference = channel_reference or attempt.channel_reference
    attempt.error_code, attempt.error_message = code[:64], message[:255]
    resolved = status not in UNRESOLVED
    attempt.resolved_at = timezone.now() if resolved else None
    if save:
        attempt.save(update_fields=ATTEMPT_OUTCOME_FIELDS)


def _resolve_attempt(attempt: PaymentAttempt) -> None:
    """Inquiry first; if the channel cannot say, reverse (冲正) so that nothing stays charged unknowingly."""
    connector = get_connector(attempt.channel.connector)
    request = ReferenceRequest(channel=attempt.channel.remote_id or attempt.channel.code, reference=attempt.reference)
    try:
        inquiry = connector.inquire(request)
    except Exception:
        logger.exception("inquiry raised for attempt %s", attempt.reference)
        inquiry = Inquiry(Outcome.UNKNOWN)
    if inquiry.outcome == Outcome.APPROVED:
        if inquiry.state == RemoteState.CAPTURED:
            _update_attempt(attempt, AttemptStatus.CAPTURED, inquiry.channel_reference, "", "")
            return
        if inquiry.state == RemoteState.AUTHORIZED:
            _update_attempt(attempt, AttemptStatus.AUTHORIZED, inquiry.channel_reference, "", "")
            return
        if inquiry.state in (RemoteState.NOT_FOUND, RemoteState.DECLINED, RemoteState.VOIDED, RemoteState.REVERSED):
            _update_attempt(attempt, AttemptStatus.FAILED, "", attempt.error_code or "not_charged", "not charged")
            return
    try:
        reversal = connector.reverse(request)
    except Exception:
        logger.exception("reversal raised for attempt %s", attempt.reference)
        reversal = ChannelResponse(Outcome.UNKNOWN)
    if reversal.outcome == Outcome.APPROVED:
        _update_attempt(attempt, AttemptStatus.REVERSED, "", attempt.error_code or "timeout", "reversed after timeout")
    else:
        _update_attempt(attempt, AttemptStatus.UNKNOWN, "", attempt.error_code or "timeout", "awaiting resolution")


def _finish_authorized(
    intent: PaymentIntent, attempt: PaymentAttempt, *, captured: bool, attempt_unsaved: bool = False
) -> None:
    """Records an authorisation (or a capture) and, when captured, posts the points — in one transaction whose
    guarded UPDATE only the request that owns the `processing` payment can win."""
    channel = attempt.channel
    now = timezone.now()
    fields: dict[str, Any] = {
        "channel": channel,
        "acquirer_id": channel.acquirer_id,
        "authorized_at": now,
        "failure_code": "",
        "failure_message": "",
        "updated_at": now,
    }
    if captured:
        fields.update(
            amount_captured=intent.amount,
            amount_capturable=0,
            status=Status.SUCCEEDED,
            captured_at=now,
            business_date=business_date(now, channel.cutoff),
        )
    else:
        fields.update(
            amount_capturable=intent.amount,
            status=Status.REQUIRES_CAPTURE,
            authorization_expires_at=now + timedelta(hours=channel.authorization_hours),
        )
        if intent.risk_review:
            fields["risk_review_deadline"] = min(now + RISK_REVIEW_WINDOW, fields["authorization_expires_at"])
    _finish(intent, fields, earn=captured, attempt=attempt if attempt_unsaved else None)


def _finish(
    intent: PaymentIntent, fields: dict[str, Any], *, earn: bool, attempt: PaymentAttempt | None = None
) -> bool:
    """Moves a `processing` payment on with `fields`; False when another request already did. `attempt`: an
    approval set on the object but not yet written (PostgreSQL), written in the same statement, won or not."""
    if earn:
        for name, value in fields.items():
            setattr(intent, name, value)
        fields["points_earned"] = _points_to_earn(intent)
        if attempt is not None:
            captured = _capture_in_one_statement(intent, fields, attempt)
            if captured is not None:
                return captured
    return _finish_in_transaction(intent, fields, earn=earn, attempt=attempt)


def _finish_in_transaction(
    intent: PaymentIntent, fields: dict[str, Any], *, earn: bool, attempt: PaymentAttempt | None
) -> bool:
    with transaction.atomic():
        won = (
            _finish_with_attempt(intent, fields, attempt)
            if attempt is not None
            else PaymentIntent.objects.filter(pk=intent.pk, status=Status.PROCESSING).update(**fields)
        )
        if not won:
            intent.refresh_from_db()
            return False
        for name, value in fields.items():
            setattr(intent, name, value)
        if earn:
            _on_capture(intent, at=fields["captured_at"])
    return True


def _finish_with_attempt(intent: PaymentIntent, fields: dict[str, Any], attempt: PaymentAttempt) -> int:
    """PostgreSQL: the attempt's outcome and the payment's guarded move on, in one statement; returns the payments
    moved (0 or 1). The attempt is written either way."""
    ctes, params = _finish_ctes(intent, fields, attempt)
    with connection.cursor() as cursor:
        execute(cursor, f"WITH {ctes} SELECT count(*) FROM moved", params)  # noqa: S608  # SQL of the models
        row = cursor.fetchone()
    return int(row[0])


def _finish_ctes(intent: PaymentIntent, fields: dict[str, Any], attempt: PaymentAttempt) -> tuple[str, list[Any]]:
    """The CTEs writing the attempt's outcome (`outcome`, always) and moving the payment on from `processing` with
    `fields` (`moved`: its id and cardholder, or no row when another request moved it first), and their values."""
    meta = PaymentIntent._meta
    assignments, values = [], []
    for name, value in fields.items():
        field = meta.get_field(name)
        assert field.concrete, name
        raw = value.pk if isinstance(value, models.Model) else value
        assignments.append(f"{field.column} = %s")  # type: ignore[union-attr]
        values.append(field.get_db_prep_save(raw, connection))  # type: ignore[union-attr]
    attempt_meta = PaymentAttempt._meta
    outcome = [
        attempt_meta.get_field(name).get_db_prep_save(getattr(attempt, name), connection)  # type: ignore[union-attr]
        for name in ATTEMPT_OUTCOME_FIELDS
    ]
    attempt_set, intent_set = ", ".join(f"{name} = %s" for name in ATTEMPT_OUTCOME_FIELDS), ", ".join(assignments)
    # Table and column names come from the models; every value is a parameter.
    ctes = f"outcome AS (UPDATE {attempt_meta.db_table} SET {attempt_set} WHERE id = %s), "  # noqa: S608
    ctes += f"moved AS (UPDATE {meta.db_table} SET {intent_set} WHERE id = %s AND status = %s"  # noqa: S608
    ctes += " RETURNING id, cardholder_id)"
    return ctes, [*outcome, attempt.pk, *values, intent.pk, Status.PROCESSING]


def _capture_in_one_statement(intent: PaymentIntent, fields: dict[str, Any], attempt: PaymentAttempt) -> bool | None:
    """PostgreSQL, outside a caller's transaction, no points paid with: the capture as one statement — the attempt's
    outcome, the payment's guarded move with its fee, the fee's split and the points earned (`CarriedEarn`), all or
    none written, with no transaction to open and commit around them (one round trip instead of four). Returns
    whether this request moved the payment, or None when the capture must take the transactional path (nothing was
    written): another database, a caller's transaction, a points hold to post, an earn that is not plain."""
    if not commits_alone() or intent.points_hold_id is not None:
        return None
    carried = None
    if fields["points_earned"]:
        carried = payment_points.earn_carried(intent, fields["points_earned"])
        if carried is None:
            return None
    fee, splits = fees.capture_fee(intent, at=fields["captured_at"])
    ctes, params = _finish_ctes(intent, {**fields, "fee": fee}, attempt)
    for index, split in enumerate(splits):
        table, columns, values = new_row(split)  # written with the payment's move, and only then
        placeholders = ", ".join(["%s"] * len(values))
        ctes += f", split{index} AS (INSERT INTO {table} ({', '.join(columns)}) SELECT {placeholders} FROM moved)"  # noqa: S608
        params += values
    if carried is not None:  # the points, posted by the ledger's function for the row the guarded move moved
        earn = carried.call("moved.cardholder_id")
        ctes += f", earned AS (SELECT earn.txn_id FROM moved CROSS JOIN LATERAL {earn} AS earn)"  # noqa: S608
        params += carried.params
    else:
        ctes += ", earned AS (SELECT moved.id AS txn_id FROM moved)"
    if not _capture_rides_late(intent, fields, attempt, ctes, params):
        try:
            with connection.cursor() as cursor:
                execute(cursor, f"WITH {ctes} SELECT txn_id FROM earned", params)  # noqa: S608
                won = bool(cursor.fetchall())
        except DatabaseError as exc:
            failure = ledger_bridge.carried_failure(exc)
            if isinstance(failure, ledger_bridge.EarnNotPlain):
                return None
            raise failure or exc from exc
        if not won:
            intent.refresh_from_db()
            return False
    for name, value in fields.items():
        setattr(intent, name, value)
    intent.fee = fee
    return True


_MOVED_ELSEWHERE = "payments:moved-elsewhere"
# The capture's rows read back with the outcome: fails the whole statement unless the guarded move moved the payment.
_REQUIRE_MOVED = (
    f"SELECT CASE WHEN mengka_require(EXISTS (SELECT 1 FROM moved), '{_MOVED_ELSEWHERE}')"  # noqa: S608 (a constant)
    " THEN (SELECT count(*) FROM earned) END, false"
)


def _capture_rides_late(
    intent: PaymentIntent, fields: dict[str, Any], attempt: PaymentAttempt, ctes: str, params: list[Any]
) -> bool:
    """In a keyed run whose caller renders its outcome from the payment object (the merchant API's create), the
    capture's statement (`ctes`, ending with `earned`) is not made now: it rides with the statement storing the
    outcome and the events (`core.idempotency.ride_late`) — one statement and one commit fewer, and the capture, its
    events and the response stored for replay are written together or not at all. The caller moves the object on at
    once, as the response reports it.

    The statement requires the guarded move to have moved the payment; if another request moved it first, or the earn
    cannot be posted in the statement, nothing is written and the capture takes the transactional path then
    (`_finish_in_transaction`): captured, the rest is written without it; moved elsewhere, the request ends with a
    conflict, stored as the key's outcome (the payment shows what became of it)."""

    def on_error(exc: DatabaseError) -> bool:
        failure = ledger_bridge.carried_failure(exc)
        if failure is not None and not isinstance(failure, ledger_bridge.EarnNotPlain):
            raise failure from exc
        if failure is None and _MOVED_ELSEWHERE not in str(exc):
            return False
        if _finish_in_transaction(intent, dict(fields), earn=True, attempt=attempt):
            return True
        raise Conflict("Another request moved this payment on first.", code="payment_unexpected_state")

    rider = idempotency.Rider(ctes, params, _REQUIRE_MOVED, lambda _rows: None, name="capture", on_error=on_error)
    return idempotency.ride_late(rider)


def _on_capture(intent: PaymentIntent, *, at: Any) -> None:
    """In the capture's transaction (the payment row is locked by its UPDATE): points earned on the cash part,
    points used to pay spent from their hold, the fee charged and split."""
    if intent.points_earned:
        payment_points.post_earn(intent, intent.points_earned)
    extra: dict[str, Any] = {}
    spend_id = ledger_bridge.spend_post(intent=intent)
    if spend_id:
        extra["points_spend_id"] = spend_id
    if fees.record_capture(intent, at=at):
        extra["fee"] = intent.fee
    if extra:
        PaymentIntent.objects.filter(pk=intent.pk).update(**extra)
        for name, value in extra.items():
            setattr(intent, name, value)


def _points_to_earn(intent: PaymentIntent) -> int:
    """The points a capture earns: zero when the issuer runs no points programme, and for a test-mode payment
    (points are a bank's real liability; a test never creates one)."""
    if not intent.livemode or payment_points.issuer_program(intent) is None:
        return 0
    return payment_points.points_for_capture(intent)


def _fail(intent: PaymentIntent, code: str, message: str) -> None:
    with transaction.atomic():
        failed = PaymentIntent.objects.filter(
            pk=intent.pk, status__in=[Status.PROCESSING, Status.REQUIRES_CONFIRMATION]
        ).update(status=Status.FAILED, failure_code=code[:64], failure_message=message[:255], updated_at=timezone.now())
        intent.refresh_from_db()
        if failed:
            ledger_bridge.spend_void(intent=intent)


# --- capture ------------------------------------------------------------------------------------------------------


def payment_capture(
    *, merchant: Merchant, payment_id: str, idempotency_key: str, amount: int | None = None, livemode: bool = True
) -> PaymentIntent:
    def execute() -> dict[str, Any]:
        _capture(_load(payment_id, merchant, livemode), amount)
        return {"payment": payment_id}

    run_idempotent(
        scope=_scope(merchant, livemode),
        key=idempotency_key,
        operation="payment.capture",
        request={"payment": payment_id, "amount": amount},
        execute=execute,
    )
    return _load(payment_id, merchant, livemode)


def _capture(intent: PaymentIntent, amount: int | None) -> None:
    if intent.status != Status.REQUIRES_CAPTURE:
        raise Conflict(f"A payment in status {intent.status} cannot be captured.", code="payment_unexpected_state")
    if intent.risk_review:
        raise Conflict("This payment is held for risk review; it cannot be captured yet.", code="risk_review_pending")
    amount = intent.amount_capturable if amount is None else amount
    validate_minor_amount(amount, intent.currency)
    if amount > intent.amount_capturable:
        raise ValidationFailed(
            f"At most {intent.amount_capturable} can be captured.", code="amount_too_large", param="amount"
        )
    if intent.authorization_expires_at and intent.authorization_expires_at <= timezone.now():
        raise Conflict("The authorisation has expired; it can no longer be captured.", code="authorization_expired")
    won = PaymentIntent.objects.filter(pk=intent.pk, status=Status.REQUIRES_CAPTURE).update(
        status=Status.PROCESSING, updated_at=timezone.now()
    )
    if not won:
        raise Conflict("This payment is being captured by another request.", code="payment_unexpected_state")
    attempt = intent.attempts.filter(status=AttemptStatus.AUTHORIZED).select_related("channel").get()
    channel = attempt.channel
    connector = get_connector(channel.connector)
    request = CaptureRequest(
        channel=channel.remote_id or channel.code, reference=attempt.reference, amount=amount, currency=intent.currency
    )
    try:
        response = connector.capture(request)
    except Exception:
        logger.exception("capture raised for %s", attempt.reference)
        response = ChannelResponse(Outcome.UNKNOWN)
    if response.outcome == Outcome.UNKNOWN:
        response = _capture_outcome_by_inquiry(connector, channel, attempt)
    if response.outcome == Outcome.APPROVED:
        _finish_capture(intent, attempt, amount)
        return
    if response.outcome == Outcome.UNKNOWN:
        return  # stays processing; attempts_resolve finishes it
    PaymentIntent.objects.filter(pk=intent.pk, status=Status.PROCESSING).update(status=Status.REQUIRES_CAPTURE)
    raise ChannelError(f"The channel refused the capture ({response.code or 'declined'}).", code="capture_failed")


def _capture_outcome_by_inquiry(connector: Any, channel: Channel, attempt: PaymentAttempt) -> ChannelResponse:
    try:
        inquiry = connector.inquire(ReferenceRequest(channel.remote_id or channel.code, attempt.reference))
    except Exception:
        return ChannelResponse(Outcome.UNKNOWN)
    if inquiry.outcome != Outcome.APPROVED:
        return ChannelResponse(Outcome.UNKNOWN)
    if inquiry.state == RemoteState.CAPTURED:
        return ChannelResponse(Outcome.APPROVED, RemoteState.CAPTURED)
    return ChannelResponse(Outcome.DECLINED, inquiry.state, code="not_captured")


def _finish_capture(intent: PaymentIntent, attempt: PaymentAttempt, amount: int) -> None:
    now = timezone.now()
    fields: dict[str, Any] = {
        "amount_captured": amount,
        "amount_capturable": 0,
        "status": Status.SUCCEEDED,
        "captured_at": now,
        "business_date": business_date(now, attempt.channel.cutoff),
        "updated_at": now,
    }
    if _finish(intent, fields, earn=True):
        _update_attempt(attempt, AttemptStatus.CAPTURED, attempt.channel_reference, "", "")


# --- cancel (void / 撤销) -----------------------------------------------------------------------------------------


def payment_cancel(
    *,
    merchant: Merchant,
    payment_id: str,
    idempotency_key: str,
    reason: str = "requested_by_merchant",
    livemode: bool = True,
) -> PaymentIntent:
    def execute() -> dict[str, Any]:
        _cancel(_load(payment_id, merchant, livemode), reason)
        return {"payment": payment_id}

    run_idempotent(
        scope=_scope(merchant, livemode),
        key=idempotency_key,
        operation="payment.cancel",
        request={"payment": payment_id, "reason": reason},
        execute=execute,
    )
    return _load(payment_id, merchant, livemode)


def _cancel(intent: PaymentIntent, reason: str) -> None:
    now = timezone.now()
    if intent.status == Status.REQUIRES_CONFIRMATION:
        with transaction.atomic():
            won = PaymentIntent.objects.filter(pk=intent.pk, status=Status.REQUIRES_CONFIRMATION).update(
                status=Status.CANCELED, canceled_at=now, cancellation_reason=reason[:32]
            )
            if not won:
                raise Conflict("The payment changed while canceling; retry.", code="payment_unexpected_state")
            ledger_bridge.spend_void(intent=intent)
        return
    if intent.status == Status.SUCCEEDED:
        if not _voidable_today(intent):
            raise Conflict(
                "This payment has been settled or is past its business day; refund it instead.",
                code="payment_not_voidable",
            )
        source_status = Status.SUCCEEDED
    elif intent.status == Status.REQUIRES_CAPTURE:
        source_status = Status.REQUIRES_CAPTURE
    else:
        raise Conflict(f"A payment in status {intent.status} cannot be canceled.", code="payment_unexpected_state")
    guard = PaymentIntent.objects.filter(pk=intent.pk, status=source_status)
    if source_status == Status.SUCCEEDED:
        guard = guard.filter(amount_refund_reserved=0, settled=False)
    if not guard.update(status=Status.PROCESSING, updated_at=now):
        raise Conflict("The payment changed while canceling; retry.", code="payment_unexpected_state")
    attempt = intent.attempts.filter(status__in=[AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED]).get()
    channel = attempt.channel
    request = ReferenceRequest(channel.remote_id or channel.code, attempt.reference)
    # An authorisation is voided; a captured payment is undone by reversal (撤销 on its business day).
    undo = get_connector(channel.connector).reverse if source_status == Status.SUCCEEDED else None
    try:
        response = undo(request) if undo else get_connector(channel.connector).void(request)
    except Exception:
        logger.exception("void raised for %s", attempt.reference)
        response = ChannelResponse(Outcome.UNKNOWN)
    if response.outcome == Outcome.UNKNOWN:
        inquiry = get_connector(channel.connector).inquire(request)
        if inquiry.outcome == Outcome.APPROVED and inquiry.state in (RemoteState.VOIDED, RemoteState.REVERSED):
            response = ChannelResponse(Outcome.APPROVED, inquiry.state)
    if response.outcome != Outcome.APPROVED:
        PaymentIntent.objects.filter(pk=intent.pk, status=Status.PROCESSING).update(status=source_status)
        raise ChannelError(f"The channel refused the void ({response.code or 'unknown'}).", code="void_failed")
    with transaction.atomic():
        locked = PaymentIntent.objects.select_for_update().get(pk=intent.pk)
        points_to_reverse = locked.points_earned - locked.points_reversed
        locked.status = Status.CANCELED
        locked.canceled_at = now
        locked.cancellation_reason = reason[:32]
        locked.amount_capturable = 0
        locked.points_reversed = locked.points_earned
        locked.risk_review = False
        if source_status == Status.SUCCEEDED:
            fees.record_reversal(locked)
            ledger_bridge.spend_return(
                intent=locked,
                refunded_total=locked.amount_captured,
                captured_total=locked.amount_captured,
                cause="void",
            )
        else:
            ledger_bridge.spend_void(intent=locked)
        locked.save()
        final = AttemptStatus.REVERSED if source_status == Status.SUCCEEDED else AttemptStatus.VOIDED
        _update_attempt(attempt, final, attempt.channel_reference, "", "")
        if points_to_reverse > 0:
            payment_points.post_reversal(locked, points_to_reverse, cause="void")


def _voidable_today(intent: PaymentIntent) -> bool:
    if intent.settled or intent.business_date is None or intent.channel is None:
        return False
    return intent.business_date == business_date(timezone.now(), intent.channel.cutoff)


# --- risk review ----------------------------------------------------------------------------------------------------


def _load_under_review(payment_id: str) -> PaymentIntent:
    try:
        return PaymentIntent.objects.select_related("channel", "card__product", "merchant").get(public_id=payment_id)
    except PaymentIntent.DoesNotExist:
        raise NotFound("No such payment.", param="payment") from None


def _take_review(intent: PaymentIntent, decision: str) -> None:
    """Only one decision wins: the flag is cleared by a guarded UPDATE."""
    taken = PaymentIntent.objects.filter(pk=intent.pk, risk_review=True, status=Status.REQUIRES_CAPTURE).update(
        risk_review=False, risk_decision=decision, updated_at=timezone.now()
    )
    if not taken:
        raise Conflict("This payment is not waiting for a risk decision.", code="risk_review_not_pending")
    intent.risk_review, intent.risk_decision = False, decision


def _restore_review(intent: PaymentIntent) -> None:
    PaymentIntent.objects.filter(pk=intent.pk, status=Status.REQUIRES_CAPTURE).update(
        risk_review=True, risk_decision=""
    )


def risk_review_approve(*, payment_id: str, actor: Any) -> PaymentIntent:
    """Releases a held payment: captured now if the merchant asked for automatic capture, else left to the merchant."""
    intent = _load_under_review(payment_id)
    _take_review(intent, RiskDecision.APPROVED)
    if intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC:
        try:
            _capture(intent, None)
        except (Conflict, ChannelError, ValidationFailed):
            _restore_review(intent)
            raise
    audit_record(actor=actor, action="payment.risk_approved", obj=intent, bank_id=intent.issuer_id)
    return _load_under_review(payment_id)


def risk_review_reject(*, payment_id: str, actor: Any, reason: str = "risk_rejected") -> PaymentIntent:
    """Voids a held payment."""
    intent = _load_under_review(payment_id)
    _take_review(intent, RiskDecision.REJECTED)
    try:
        _cancel(intent, reason)
    except (Conflict, ChannelError):
        _restore_review(intent)
        raise
    audit_record(actor=actor, action="payment.risk_rejected", obj=intent, reason=reason, bank_id=intent.issuer_id)
    return _load_under_review(payment_id)


def risk_reviews_expire() -> int:
    """Voids held payments nobody decided on by their deadline."""
    expired = 0
    due = PaymentIntent.objects.filter(
        risk_review=True, status=Status.REQUIRES_CAPTURE, risk_review_deadline__lte=timezone.now()
    ).select_related("channel")
    for intent in due:
        try:
            _take_review(intent, RiskDecision.EXPIRED)
        except Conflict:
            continue  # decided meanwhile
        try:
            _cancel(intent, "risk_review_expired")
        except (Conflict, ChannelError):
            _restore_review(intent)
            logger.warning("could not void expired review %s; will retry", intent.public_id)
            continue
        audit_record(actor=None, action="payment.risk_review_expired", obj=intent)
        expired += 1
    return expired


# --- refund (退货) ------------------------------------------------------------------------------------------------


def refund_create(
    *,
    merchant: Merchant,
    payment_id: str,
    idempotency_key: str,
    amount: int | None = None,
    reason: str = "",
    livemode: bool = True,
) -> Refund:
    """A refund of a payment in this mode; the refund belongs to its payment's mode."""

    def execute() -> dict[str, Any]:
        earlier = resumed()
        if earlier and earlier.get("refund"):
            # An earlier run of this key wrote the refund (and may have sent it), then stopped: answer with that
            # refund as it is (one left pending or unknown is settled by `attempts_resolve`), never a second one.
            return {"refund": earlier["refund"]}
        return {"refund": _refund(_load(payment_id, merchant, livemode), amount, reason).public_id}

    outcome = run_idempotent(
        scope=_scope(merchant, livemode),
        key=idempotency_key,
        operation="refund.create",
        request={"payment": payment_id, "amount": amount, "reason": reason},
        execute=execute,
    )
    return Refund.objects.select_related("intent").get(public_id=outcome["refund"])


def _refund(intent: PaymentIntent, amount: int | None, reason: str) -> Refund:
    if intent.status != Status.SUCCEEDED:
        raise Conflict(f"A payment in status {intent.status} cannot be refunded.", code="payment_unexpected_state")
    remaining = intent.amount_captured - intent.amount_refund_reserved
    amount = remaining if amount is None else amount
    if amount == 0 and remaining == 0:
        raise Conflict("This payment has been refunded in full.", code="charge_already_refunded")
    validate_minor_amount(amount, intent.currency)
    with transaction.atomic():
        reserved = PaymentIntent.objects.filter(
            pk=intent.pk,
            status=Status.SUCCEEDED,
            amount_refund_reserved__lte=F("amount_captured") - amount,
        ).update(amount_refund_reserved=F("amount_refund_reserved") + amount, updated_at=timezone.now())
        if not reserved:
            raise ValidationFailed(
                "The refund would exceed what was captured.", code="refund_exceeds_captured", param="amount"
            )
        count = Refund.objects.filter(intent=intent).count() + 1
        refund = Refund.objects.create(
            intent=intent, amount=amount, reason=reason[:100], reference=f"{intent.public_id}-r{count}"
        )
        record_progress({"refund": refund.public_id})  # a retry of the key carries on with it
    attempt = intent.attempts.filter(status__in=[AttemptStatus.CAPTURED]).select_related("channel").get()
    request = RefundRequest(
        channel=attempt.channel.remote_id or attempt.channel.code,
        reference=attempt.reference,
        refund_reference=refund.reference,
        amount=amount,
        currency=intent.currency,
    )
    _execute_refund(refund, attempt.channel, request)
    refund.refresh_from_db()
    return refund


def _execute_refund(refund: Refund, channel: Channel, request: RefundRequest) -> None:
    connector = get_connector(channel.connector)
    try:
        response = connector.refund(request)
    except Exception:
        logger.exception("refund raised for %s", refund.reference)
        response = ChannelResponse(Outcome.UNKNOWN)
    if response.outcome == Outcome.UNKNOWN:
        try:
            inquiry = connector.refund_inquire(request)
        except Exception:
            inquiry = Inquiry(Outcome.UNKNOWN)
        if inquiry.outcome == Outcome.APPROVED:
            response = (
                ChannelResponse(Outcome.APPROVED, RemoteState.REFUNDED)
                if inquiry.state == RemoteState.REFUNDED
                else ChannelResponse(Outcome.FAILED, code="refund_not_processed")
            )
    if response.outcome == Outcome.APPROVED:
        _finish_refund(refund, response.channel_reference)
    elif response.outcome == Outcome.UNKNOWN:
        Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(status=Refund.Status.UNKNOWN)
    else:
        _fail_refund(refund, response.code or "refund_declined")


def _finish_refund(refund: Refund, channel_reference: str) -> None:
    with transaction.atomic():
        locked_refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if locked_refund.status == Refund.Status.SUCCEEDED:
            return
        intent = PaymentIntent.objects.select_for_update().get(pk=refund.intent_id)
        intent.amount_refunded += refund.amount
        target = payment_points.points_to_have_reversed(intent, intent.amount_refunded)
        delta = target - intent.points_reversed
        intent.points_reversed = target
        fees.record_refund(intent, locked_refund)
        ledger_bridge.spend_return(
            intent=intent,
            refunded_total=intent.amount_refunded,
            captured_total=intent.amount_captured,
            cause=locked_refund.public_id,
        )
        intent.save(update_fields=["amount_refunded", "points_reversed", "fee_returned", "updated_at"])
        locked_refund.status = Refund.Status.SUCCEEDED
        locked_refund.channel_reference = channel_reference
        locked_refund.points_reversed = delta
        locked_refund.completed_at = timezone.now()
        locked_refund.save(update_fields=["status", "channel_reference", "points_reversed", "completed_at"])
        if delta > 0:
            payment_points.post_reversal(intent, delta, cause=locked_refund.public_id)


def _fail_refund(refund: Refund, code: str) -> None:
    with transaction.atomic():
        failed = Refund.objects.filter(pk=refund.pk, status__in=[Refund.Status.PENDING, Refund.Status.UNKNOWN]).update(
            status=Refund.Status.FAILED, failure_code=code[:64], completed_at=timezone.now()
        )
        if failed:
            PaymentIntent.objects.filter(pk=refund.intent_id).update(
                amount_refund_reserved=F("amount_refund_reserved") - refund.amount
            )


# --- channels and routing rules ------------------------------------------------------------------------------------


@transaction.atomic
def channel_create(
    *,
    code: str,
    name: str,
    kind: str,
    acquirer: MemberBank,
    methods: list[str],
    currencies: list[str],
    connector: str = "simulator",
    remote_id: str = "",
    fee_percent: Decimal = Decimal("0.6"),
    fee_fixed: int = 0,
    sandbox: bool = False,
    actor: Any = None,
) -> Channel:
    """A channel is carried by an acquirer of record: a member with an acquiring licence (Mengka never holds funds)."""
    if not acquirer.acquiring_licence:
        raise ValidationFailed("The acquirer of record must hold an acquiring licence.", param="acquirer")
    unknown = set(methods) - set(PaymentMethod.values)
    if unknown:
        raise ValidationFailed(f"Unknown payment methods: {', '.join(sorted(unknown))}.", param="methods")
    for currency in currencies:
        validate_minor_amount(1, currency, param="currencies")
    channel = Channel(
        code=code,
        name=name,
        kind=kind,
        acquirer=acquirer,
        methods=methods,
        currencies=currencies,
        connector=connector,
        remote_id=remote_id,
        fee_percent=fee_percent,
        fee_fixed=fee_fixed,
        sandbox=sandbox,
    )
    channel.full_clean()
    channel.save()
    audit_record(actor=actor, action="channel.create", obj=channel, after=snapshot(channel), bank_id=acquirer.pk)
    transaction.on_commit(routing.config_changed)
    return channel


@transaction.atomic
def routing_rule_create(
    *,
    name: str,
    strategy: str,
    priority: int = 100,
    channels: list[tuple[Channel, int]] | None = None,
    actor: Any = None,
    **conditions: Any,
) -> RoutingRule:
    """A rule with its channels as (channel, weight) in priority order."""
    rule = RoutingRule(name=name, strategy=strategy, priority=priority, **conditions)
    rule.full_clean()
    rule.save()
    for position, (channel, weight) in enumerate(channels or [], start=1):
        RuleChannel.objects.create(rule=rule, channel=channel, position=position, weight=weight)
    audit_record(actor=actor, action="routing_rule.create", obj=rule, after=snapshot(rule))
    transaction.on_commit(routing.config_changed)
    return rule


# --- routing configuration and channel health ----------------------------------------------------------------------


def routing_config_changed(*, actor: Any = None, what: str = "") -> None:
    """Every process reloads channels, rules and error policies (within ROUTING_CONFIG_TTL)."""
    routing.config_changed()


def channels_probe() -> dict[str, str]:
    """Health probe: an inquiry for a reference that cannot exist tells whether a channel answers at all. A channel
    whose breaker is half-open gets its probe this way, so it closes again without risking a real payment."""
    config = routing.load_config()
    store = health_store()
    states: dict[str, str] = {}
    for info in config.channels.values():
        if not info.enabled:
            continue
        state = store.state(info.code, info.breaker)
        if state == "closed":
            states[info.code] = state
            continue
        if not store.allow(info.code, info.breaker):
            states[info.code] = str(state)
            continue
        try:
            inquiry = get_connector(info.connector).inquire(ReferenceRequest(info.remote_id, "health-probe"))
            alive = inquiry.outcome == Outcome.APPROVED
        except Exception:
            alive = False
        states[info.code] = str(store.record(info.code, "probe", alive, info.breaker))
    return states


# --- jobs ---------------------------------------------------------------------------------------------------------


@dataclass
class ResolveReport:
    examined: int = 0
    charged: int = 0
    not_charged: int = 0
    still_unknown: int = 0


def attempts_resolve(*, older_than: timedelta = timedelta(seconds=30)) -> ResolveReport:
    """Settles attempts left pending or unknown (a crash, a timeout) and the payments waiting on them."""
    report = ResolveReport()
    cutoff = timezone.now() - older_than
    stuck = PaymentAttempt.objects.filter(status__in=UNRESOLVED, created_at__lte=cutoff).select_related(
        "channel", "intent"
    )
    for attempt in stuck.iterator():
        report.examined += 1
        _resolve_attempt(attempt)
        intent = PaymentIntent.objects.select_related("card__product", "channel").get(pk=attempt.intent_id)
        if attempt.status in (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED):
            report.charged += 1
            if intent.status == Status.PROCESSING:
                _finish_authorized(intent, attempt, captured=attempt.status == AttemptStatus.CAPTURED)
        elif attempt.status in UNRESOLVED:
            report.still_unknown += 1
        else:
            report.not_charged += 1
            if (
                intent.status == Status.PROCESSING
                and not intent.attempts.filter(
                    status__in=[*UNRESOLVED, AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED]
                ).exists()
            ):
                _fail(intent, attempt.error_code or "not_charged", "The channel did not charge this payment.")
    # Confirms or captures interrupted mid-flight: the attempt is authorised but the payment is still processing.
    for intent in PaymentIntent.objects.filter(status=Status.PROCESSING, updated_at__lte=cutoff).select_related(
        "card__product"
    ):
        authorized = (
            intent.attempts.filter(status__in=[AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED])
            .select_related("channel")
            .first()
        )
        if authorized is None:
            continue
        if intent.authorized_at is None:
            _resolve_attempt(authorized)
            if authorized.status in (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED):
                _finish_authorized(intent, authorized, captured=authorized.status == AttemptStatus.CAPTURED)
            continue
        connector = get_connector(authorized.channel.connector)
        response = _capture_outcome_by_inquiry(connector, authorized.channel, authorized)
        if response.outcome == Outcome.APPROVED:
            inquiry = connector.inquire(
                ReferenceRequest(authorized.channel.remote_id or authorized.channel.code, authorized.reference)
            )
            _finish_capture(intent, authorized, inquiry.amount_captured or intent.amount)
        elif response.outcome == Outcome.DECLINED:
            PaymentIntent.objects.filter(pk=intent.pk, status=Status.PROCESSING).update(status=Status.REQUIRES_CAPTURE)
    # Refunds whose outcome is unknown, and those never sent (the request stopped between writing and sending): sent
    # again under the same refund reference, which the channel answers once.
    unsettled = [Refund.Status.PENDING, Refund.Status.UNKNOWN]
    for refund in Refund.objects.filter(status__in=unsettled, created_at__lte=cutoff).select_related("intent"):
        captured = refund.intent.attempts.filter(status=AttemptStatus.CAPTURED).select_related("channel").first()
        if captured is None:
            continue
        _execute_refund(
            refund,
            captured.channel,
            RefundRequest(
                captured.channel.remote_id or captured.channel.code,
                captured.reference,
                refund.reference,
                refund.amount,
                refund.intent.currency,
            ),
        )
    return report


def authorizations_expire() -> int:
    """Voids authorisations past their validity; capturing them afterwards is refused."""
    expired = 0
    due = PaymentIntent.objects.filter(
        status=Status.REQUIRES_CAPTURE, authorization_expires_at__lte=timezone.now()
    ).select_related("channel")
    for intent in due:
        try:
            _cancel(intent, "authorization_expired")
        except (Conflict, ChannelError):
            logger.warning("could not void expired authorisation %s; will retry", intent.public_id)
            continue
        audit_record(actor=None, action="payment.authorization_expired", obj=intent)
        expired += 1
    return expired


@dataclass
class SweepReport:
    examined: int = 0
    orphans_reversed: int = 0
    orphans_unresolved: int = 0


def orphans_sweep(*, channel: Channel) -> SweepReport:
    """Finds charges the channel has and we do not (no attempt, or an attempt we hold as failed) and reverses them."""
    report = SweepReport()
    connector = get_connector(channel.connector)
    remote = connector.list_charges(channel.remote_id or channel.code)
    ours = dict(
        PaymentAttempt.objects.filter(reference__in=[charge.reference for charge in remote]).values_list(
            "reference", "status"
        )
    )
    live = {AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED, AttemptStatus.VOIDED, *UNRESOLVED}
    for charge in remote:
        report.examined += 1
        if charge.state not in CHARGED_STATES:
            continue
        if ours.get(charge.reference) in live:
            continue
        response = connector.reverse(ReferenceRequest(channel.remote_id or channel.code, charge.reference))
        if response.outcome == Outcome.APPROVED:
            report.orphans_reversed += 1
            PaymentAttempt.objects.filter(reference=charge.reference).update(status=AttemptStatus.REVERSED)
            audit_record(
                actor=None,
                action="payment.orphan_reversed",
                object_type="payments.channelcharge",
                object_id=charge.reference,
                after={"channel": channel.code, "amount": charge.amount, "currency": charge.currency},
            )
        else:
            report.orphans_unresolved += 1
    return report
