"""Creating and confirming a payment: validation, the funding source, risk, routing, and the channels tried in turn.

Confirming commits the routing decision, the move to `processing` and the first attempt in one transaction before
any channel is called; each later attempt is committed before its call. A channel failure moves on to the next
candidate only when the attempt is known not to have charged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.calendar import local_now
from core.errors import Conflict, MengkaError, NotFound, ValidationFailed
from core.idempotency import record_progress, resumed, run_idempotent
from core.ids import new_public_id
from core.money import validate_minor_amount
from members.models import Card, Cardholder, LinkedAccount, PointsProgram
from merchants.models import Merchant, Store

from .. import events, ledger_bridge, methods, promotions, risk, routing
from .. import points as payment_points
from ..health import BreakerState, health_store
from ..models import Channel, PaymentAttempt, PaymentIntent, PaymentMethod, RiskOutcome, RoutingDecision
from .attempts import attempt_open, attempt_record, authorize, authorize_outcome
from .capture import payment_fail, payment_finish
from .common import (
    CHARGED,
    MAX_ATTEMPTS,
    UNRESOLVED,
    AttemptStatus,
    Status,
    capture_window_check,
    idempotency_scope,
    payment_keyed,
    payment_load,
    payment_save,
)

_METHODS, _CAPTURE_METHODS = frozenset(PaymentMethod.values), frozenset(PaymentIntent.CaptureMethod.values)


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
    store: Store | None = None,
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
        "store": store.pk if store else None,
    }
    request.update({name: value for name, value in extra.items() if value})
    executed: list[PaymentIntent] = []

    def execute() -> dict[str, Any]:
        earlier = resumed()
        if earlier and earlier.get("payment"):
            # An earlier run of this key wrote the payment (and may have had it charged), then stopped: carry on
            # with that payment, never make a second one.
            intent = payment_load(earlier["payment"], merchant, livemode)
        else:
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
                store=store,
            )
        if confirm and intent.status == Status.REQUIRES_CONFIRMATION:
            _confirm(intent)
        executed.append(intent)
        return {"payment": intent.public_id}

    outcome = run_idempotent(
        scope=idempotency_scope(merchant, livemode),
        key=idempotency_key,
        operation="payment.create",
        request=request,
        execute=execute,
    )
    if executed:
        return executed[0]  # ran now: the object is current; a replay loads the stored payment
    return payment_load(outcome["payment"], merchant, livemode)


def _agreement_method(asked: str, funding: methods.Funding) -> str:
    """A payment by agreement is recorded as the merchant named it: `balance` for an agreement funded by an account
    (a wallet, a bank or prepaid balance), `agreement` for one funded by a card. A name that does not match the
    token's agreement is refused, before anything is charged."""
    if asked not in (PaymentMethod.AGREEMENT, PaymentMethod.BALANCE):
        return funding.method
    from_account = funding.linked_account is not None
    if from_account != (asked == PaymentMethod.BALANCE):
        raise MengkaError(
            "This token is for an agreement funded by an account: pay with type balance."
            if from_account
            else "This token is for an agreement funded by a card: pay with type agreement.",
            code="payment_method_mismatch",
            param="payment_method.type",
        )
    return asked


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
    device_id: str,
    linked_account: LinkedAccount | None,
    payment_code: str,
    agreement_token: str,
    use_points: int,
    livemode: bool,
    store: Store | None,
) -> PaymentIntent:
    """A new payment awaiting confirmation. Its row, the code or agreement it takes, its promotions' reservations,
    the points it holds, its key's progress and its `payment.created` event are written in one transaction: all or
    none."""
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
            methods.require_usable_card(card)
        if linked_account is not None:
            if linked_account.cardholder_id != cardholder.pk:
                raise NotFound("No such account.", param="linked_account")
            methods.require_usable_account(linked_account)
            method = PaymentMethod.BALANCE
        elif method == PaymentMethod.BALANCE:
            raise ValidationFailed(
                "A balance payment needs a linked account.", code="parameter_missing", param="linked_account"
            )
    if store is not None and (store.merchant_id != merchant.pk or store.livemode != livemode):
        raise NotFound("No such store.", param="store")
    if use_points and not livemode:
        raise ValidationFailed(
            "Points cannot pay for a test-mode payment: a cardholder's points are real.",
            code="points_not_available",
            param="use_points",
        )
    found = methods.payment_code_find(payment_code) if payment_code else None  # a read: nothing taken yet

    def priced(exclude: frozenset[int]) -> PaymentIntent:
        # One transaction, run again (rolled back whole) if a promotion it priced is taken meanwhile.
        return _write(
            merchant=merchant,
            cardholder=cardholder,
            card=card,
            linked_account=linked_account,
            funding=found,
            amount=amount,
            currency=currency,
            method=method,
            capture_method=capture_method,
            description=description,
            merchant_reference=merchant_reference,
            metadata=metadata,
            device_id=device_id,
            agreement_token=agreement_token,
            use_points=use_points,
            livemode=livemode,
            store=store,
            exclude=exclude,
        )

    return promotions.engine.run_priced(priced)


def _write(
    *,
    merchant: Merchant,
    cardholder: Cardholder | None,
    card: Card | None,
    linked_account: LinkedAccount | None,
    funding: methods.Funding | None,
    amount: int,
    currency: str,
    method: str,
    capture_method: str,
    description: str,
    merchant_reference: str,
    metadata: dict[str, Any],
    device_id: str,
    agreement_token: str,
    use_points: int,
    livemode: bool,
    store: Store | None,
    exclude: frozenset[int],
) -> PaymentIntent:
    """Writes the payment in the caller's transaction: takes its code or agreement, prices it with the merchant's
    promotions, holds its points and reserves its promotions (after the ledger's accounts: the lock order)."""
    code = agreement = None
    if funding is not None:
        methods.payment_code_take(funding)  # refused if another till took it first
    elif agreement_token:
        funding = methods.agreement_take(agreement_token, merchant=merchant, amount=amount, currency=currency)
    if funding is not None:
        if cardholder is not None and cardholder.pk != funding.cardholder.pk:
            raise NotFound("No such payment code or agreement.", code="funding_source_invalid")
        cardholder, card, linked_account = funding.cardholder, funding.card, funding.linked_account
        method = _agreement_method(method, funding) if agreement_token else funding.method
        code, agreement = funding.payment_code, funding.agreement
    assert cardholder is not None
    issuer = card.bank_id if card else linked_account.bank_id if linked_account else None
    now = timezone.now()  # the payment's created_at, and the time its public id carries
    context = promotions.context_for(
        merchant=merchant, livemode=livemode, amount=amount, currency=currency, method=method,
        cardholder=cardholder, card=card, store=store, at=now,
    )  # fmt: skip
    pricing = promotions.engine.price(context, exclude=exclude, drawing=True)
    payable = pricing.payable
    points, points_amount, program = _points_part(
        cardholder, issuer, payable, currency, use_points, wants_most=bool(code and code.use_points and livemode)
    )
    intent = PaymentIntent.objects.create(
        public_id=new_public_id("pay", at=now),
        created_at=now,
        merchant=merchant,
        cardholder=cardholder,
        card=card,
        linked_account=linked_account,
        payment_code=code,
        agreement=agreement,
        method=method,
        amount=payable - points_amount,
        points_used=points,
        points_amount=points_amount,
        discount_amount=pricing.discount,
        promotion_points=pricing.points,
        promotions=[line.as_dict() for line in pricing.lines],
        store=store,
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
    if code is not None:
        methods.payment_code_used_by(code, intent)
    record_progress({"payment": intent.public_id})  # a retry of the key carries on with this payment
    if points:
        assert program is not None
        intent.points_hold_id = ledger_bridge.spend_hold(
            intent=intent,
            program=program,
            points=points,
            expires_at=timezone.now() + timedelta(days=payment_points.POINTS_HOLD_VALIDITY_DAYS),
        )
        payment_save(intent, "points_hold_id")
    events.payment_created(intent)
    # Last: concurrent payments of one campaign queue on its rows, so they are held only until the commit.
    promotions.engine.reserve(pricing, context, payment=intent.public_id)
    return intent


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


# --- confirm ------------------------------------------------------------------------------------------------------


def payment_confirm(
    *, merchant: Merchant, payment_id: str, idempotency_key: str, livemode: bool = True
) -> PaymentIntent:
    return payment_keyed(
        merchant=merchant,
        payment_id=payment_id,
        idempotency_key=idempotency_key,
        livemode=livemode,
        operation="payment.confirm",
        request={},
        apply=_confirm,
    )


def _confirm(intent: PaymentIntent) -> None:
    if intent.status != Status.REQUIRES_CONFIRMATION:
        raise Conflict(f"A payment in status {intent.status} cannot be confirmed.", code="payment_unexpected_state")
    capture_window_check(intent)
    if intent.card is not None:
        methods.require_usable_card(intent.card)
    if intent.linked_account is not None:
        methods.require_usable_account(intent.linked_account)
    config, health = routing.load_config(), health_store()
    context = routing.context_for(intent, local_now().time())
    screened = routing.screen(context, config)
    # The breakers routing will ask for are read in the risk counters' round trip.
    assessment = risk.assess(intent, breakers=(health, screened.breakers_to_read()))
    intent.risk_outcome, intent.risk_reasons = assessment.outcome, assessment.reasons
    intent.risk_review = assessment.outcome == RiskOutcome.REVIEW
    risk_fields = {"risk_outcome": intent.risk_outcome, "risk_reasons": intent.risk_reasons}
    risk_fields["risk_review"] = intent.risk_review
    if assessment.outcome == RiskOutcome.BLOCK:
        payment_fail(intent, "risk_blocked", f"Refused by risk checks: {assessment.message}", also=risk_fields)
        return
    decision = routing.decide(context, config, health, screened=screened, breakers=assessment.breakers)
    if not decision.order:
        with transaction.atomic():
            _record_decision(intent, decision)
            payment_fail(intent, "no_channel", "No channel can carry this payment.", also=risk_fields)
        if intent.status == Status.FAILED:
            risk.uncount(assessment)
        return
    order = iter(decision.order)

    def next_channel() -> routing.ChannelInfo | None:
        # The breaker may have opened since the decision, or its half-open probe may be taken.
        return next((info for info in order if health.allow(info.code, info.breaker)), None)

    # A closed breaker, as the decision read it, lets the first channel through with nothing to take; only the
    # request that moved the payment to processing may take a half-open probe.
    first = decision.order[0]
    closed = decision.breakers.get(first.code) == BreakerState.CLOSED
    with transaction.atomic():
        _record_decision(intent, decision)
        won = (
            PaymentIntent.objects.one(intent)
            .filter(status=Status.REQUIRES_CONFIRMATION)
            .update(status=Status.PROCESSING, updated_at=timezone.now(), **risk_fields)
        )
        if not won:
            raise Conflict("This payment is being confirmed by another request.", code="payment_unexpected_state")
        intent.status = Status.PROCESSING
        info = next(order) if closed else None
        attempt: PaymentAttempt | None = (
            attempt_open(intent, config.channel_models[info.id], sequence=1) if info is not None else None
        )
    if info is None:
        info = next_channel()
    tried = 0
    while info is not None:
        tried += 1
        if attempt is None:
            attempt = _next_attempt(intent, config.channel_models[info.id], sequence=tried)
            if attempt is None:
                # The resolver settled the payment meanwhile.
                intent.refresh_from_db(from_queryset=PaymentIntent.objects.one(intent))
                return
        result = authorize_outcome(attempt, authorize(intent, attempt))
        channel_failed = result in (AttemptStatus.FAILED, AttemptStatus.REVERSED, *UNRESOLVED)
        health.record(info.code, intent.method, not channel_failed, info.breaker)
        if result in CHARGED:
            payment_finish(intent, attempt, captured=result == AttemptStatus.CAPTURED)
            return
        if result == AttemptStatus.DECLINED:
            error = attempt.error_code or "card_declined"
            _fail_uncharged(intent, assessment, error, attempt.error_message or "The card was declined.", attempt)
            return
        if result in UNRESOLVED:
            # Not known either way: no other channel may try until attempts_resolve settles this one.
            with transaction.atomic():
                if attempt_record(attempt, was=UNRESOLVED):
                    events.payment_status_changed(intent)  # payment.processing: the outcome is not known yet
            intent.refresh_from_db(from_queryset=PaymentIntent.objects.one(intent))
            return
        if not attempt_record(attempt, was=UNRESOLVED):
            # Another process settled this attempt meanwhile: it decides what comes next.
            intent.refresh_from_db(from_queryset=PaymentIntent.objects.one(intent))
            return
        if not config.retry_allowed(info.id, attempt.error_code):
            error = attempt.error_code or "channel_error"
            _fail_uncharged(intent, assessment, error, "The channel failed and the error is not retried.")
            return
        # FAILED or REVERSED: known not to have charged, and the policy allows the next channel to try.
        attempt = None
        info = next_channel() if tried < MAX_ATTEMPTS else None
    _fail_uncharged(intent, assessment, "channels_unavailable", "No channel could process the payment.")


def _next_attempt(intent: PaymentIntent, channel: Channel, *, sequence: int) -> PaymentAttempt | None:
    """Opens the next attempt, only while the payment is still `processing` (under its row lock, which the resolver
    takes too before it fails a payment with no open attempt); None when it no longer is."""
    with transaction.atomic():
        still = PaymentIntent.objects.one(intent).filter(status=Status.PROCESSING).update(updated_at=timezone.now())
        return attempt_open(intent, channel, sequence=sequence) if still else None


def _fail_uncharged(
    intent: PaymentIntent,
    assessment: risk.Assessment,
    code: str,
    message: str,
    attempt: PaymentAttempt | None = None,
) -> None:
    """Fails a payment that no channel charged, and takes it back out of the velocity counters it was counted in:
    a cardholder who tries again is counted once."""
    payment_fail(intent, code, message, attempt=attempt)
    if intent.status == Status.FAILED:
        risk.uncount(assessment)


def _record_decision(intent: PaymentIntent, decision: routing.Decision) -> None:
    RoutingDecision.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,
        rule_id=decision.rule_id,
        rule_name=decision.rule_name,
        strategy=decision.strategy,
        candidates=[candidate.as_dict() for candidate in decision.candidates],
        chosen=decision.chosen_codes,
        explored=decision.explored,
        decided_in_us=decision.decided_in_us,
    )
