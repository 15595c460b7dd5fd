"""Exchanging points between two banks' programmes, with the inter-bank CNY obligation and the alliance's fee.

rate = value(from) × (1 − fee) / value(to). Every rounding favours the alliance: the points out and the receiving
bank's share are rounded down, what the paying bank owes is rounded up. The fee and the minimum come from the
alliance's exchange policy in force (`ExchangePolicy`: versions edited by alliance operators, each in force from its
`effective_from` until the next; a version in force is never changed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.errors import Conflict, NotFound, ValidationFailed
from members.models import PointsProgram

from ..models import ExchangePolicy, LedgerTransaction, OwnerKind, Purpose
from .accounts import ALLIANCE_ID, bank_ref, clearing_ref, debt_ref, wallet_ref
from .expiry import expire_overdue
from .lots import credit_wallet, spend, today
from .obligations import points_value_units
from .posting import Actor, Kind, begin, finish, keyed, request_hash, require_positive, retry_on_conflict

FEE_PLACES = Decimal("0.0001")  # the fee rate's column holds four decimals


@dataclass(frozen=True)
class ExchangeQuote:
    rate: Decimal
    points_out: int
    payer_units: int
    payee_units: int
    fee_units: int
    fee_rate: Decimal  # the policy's, as quoted
    policy_id: int


def exchange_policy_in_force(*, at: dt.datetime | None = None) -> ExchangePolicy:
    """The version with the latest `effective_from` not after `at` (now), in one read."""
    policy = ExchangePolicy.objects.filter(effective_from__lte=at or timezone.now()).order_by("-effective_from").first()
    if policy is None:
        raise NotFound(_("Points cannot be exchanged: the alliance has no exchange policy in force."))
    return policy


def exchange_quote(*, from_program: PointsProgram, to_program: PointsProgram, amount: int) -> ExchangeQuote:
    """rate = value(from) × (1 − fee) / value(to); points out are rounded down and the CNY the paying bank owes is
    rounded up, the receiving bank's share down: every rounding remainder goes to the alliance."""
    require_positive(amount)
    if from_program.pk == to_program.pk:
        raise ValidationFailed(_("Choose two different programs."), param="to_program")
    if not (from_program.active and to_program.active):
        raise ValidationFailed(_("Both programs must be active."), param="to_program")
    policy = exchange_policy_in_force()
    if amount < policy.minimum_points:
        raise ValidationFailed(
            _("The minimum exchange is %(minimum)d points.") % {"minimum": policy.minimum_points},
            param="amount",
        )
    fee_rate = policy.fee_rate
    rate = (from_program.point_value_cny * (1 - fee_rate) / to_program.point_value_cny).quantize(
        Decimal("0.0000000001"), rounding=ROUND_FLOOR
    )
    points_out = int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_FLOOR))
    if points_out < 1:
        raise ValidationFailed(_("Too few points to exchange at this rate."), param="amount")
    payer_units = points_value_units(amount, from_program, ROUND_CEILING)
    payee_units = points_value_units(points_out, to_program, ROUND_FLOOR)
    return ExchangeQuote(rate, points_out, payer_units, payee_units, payer_units - payee_units, fee_rate, policy.pk)


def exchange_policy_check(
    *, policy_id: int | None, fee_rate: Decimal, minimum_points: int, effective_from: dt.datetime | None
) -> None:
    """What `exchange_policy_save` refuses, checked without writing (the admin form shows it by the field): a fee rate
    outside [0, 1), a minimum under 1 point, a start in the past, a version already in force."""
    if not isinstance(fee_rate, Decimal) or not Decimal(0) <= fee_rate < 1 or fee_rate != fee_rate.quantize(FEE_PLACES):
        raise ValidationFailed(
            _("The fee rate is a fraction from 0 up to (not including) 1, to at most four decimals."), param="fee_rate"
        )
    if isinstance(minimum_points, bool) or not isinstance(minimum_points, int) or minimum_points < 1:
        raise ValidationFailed(_("The minimum is a whole number of points, at least 1."), param="minimum_points")
    now = timezone.now()
    if effective_from is not None and effective_from < now:
        raise ValidationFailed(
            _("A version takes effect now or later, never in the past: leave the date empty for now."),
            param="effective_from",
        )
    if policy_id is not None:
        policy = ExchangePolicy.objects.filter(pk=policy_id).first()
        if policy is None:
            raise NotFound(_("No such exchange policy version."))
        _refuse_in_force(policy, now)


def exchange_policy_save(
    *,
    policy_id: int | None,
    fee_rate: Decimal,
    minimum_points: int,
    effective_from: dt.datetime | None,
    actor: AbstractBaseUser,
) -> ExchangePolicy:
    """Adds a version of the exchange policy (`policy_id` None) or changes one not yet in force; audited. A version
    takes effect now (`effective_from` None) or later, never in the past: that would rewrite the terms earlier
    exchanges were made under. A version in force is refused (checked again under the row's lock): add a new one."""
    exchange_policy_check(
        policy_id=policy_id, fee_rate=fee_rate, minimum_points=minimum_points, effective_from=effective_from
    )
    with transaction.atomic():
        now = timezone.now()
        before: dict[str, Any] | None = None
        if policy_id is None:
            policy = ExchangePolicy(created_by=actor)  # type: ignore[misc]
        else:
            policy = _policy_not_in_force(policy_id, now)
            before = snapshot(policy)
        starts = effective_from or now
        if ExchangePolicy.objects.filter(effective_from=starts).exclude(pk=policy.pk).exists():
            raise Conflict(_("Another version takes effect at that very moment."), param="effective_from")
        policy.fee_rate, policy.minimum_points = fee_rate.quantize(FEE_PLACES), minimum_points
        policy.effective_from = starts
        policy.save()
        audit_record(
            actor=actor,
            action="rewards.exchange_policy.change" if before else "rewards.exchange_policy.add",
            obj=policy,
            before=before,
            after=snapshot(policy),
        )
    return policy


def exchange_policy_delete(*, policy_id: int, actor: AbstractBaseUser) -> None:
    """Withdraws a version that is not in force yet; audited. A version in force (or past) stays for ever."""
    with transaction.atomic():
        policy = _policy_not_in_force(policy_id, timezone.now())
        before = snapshot(policy)
        policy.delete()
        audit_record(
            actor=actor,
            action="rewards.exchange_policy.delete",
            before=before,
            object_type="rewards.exchangepolicy",
            object_id=str(policy_id),
        )


def _policy_not_in_force(policy_id: int, now: dt.datetime) -> ExchangePolicy:
    """The version, locked, as long as it has not taken effect (checked on the stored date, under the lock)."""
    policy = ExchangePolicy.objects.select_for_update().filter(pk=policy_id).first()
    if policy is None:
        raise NotFound(_("No such exchange policy version."))
    _refuse_in_force(policy, now)
    return policy


def _refuse_in_force(policy: ExchangePolicy, now: dt.datetime) -> None:
    if policy.effective_from <= now:
        raise Conflict(
            _("This version has been in force since %(date)s and can no longer change: add a new version.")
            % {"date": timezone.localtime(policy.effective_from).strftime("%Y-%m-%d %H:%M")},
            code="policy_in_force",
        )


@retry_on_conflict
def points_exchange(
    *,
    cardholder_id: int,
    from_program: PointsProgram,
    to_program: PointsProgram,
    amount: int,
    idempotency_key: str,
    actor: Actor = None,
) -> LedgerTransaction:
    """Moves a cardholder's points from one bank's program to another's, with the inter-bank CNY obligation."""
    quote = exchange_quote(from_program=from_program, to_program=to_program, amount=amount)
    digest = request_hash(
        op="exchange", cardholder=cardholder_id, src=from_program.pk, dst=to_program.pk, amount=amount
    )
    src_wallet, src_breakage = (
        wallet_ref(cardholder_id, from_program),
        bank_ref(from_program, Purpose.BREAKAGE, cardholder_id),
    )
    src_sink = bank_ref(from_program, Purpose.EXCHANGE, cardholder_id)
    dst_wallet, dst_debt = wallet_ref(cardholder_id, to_program), debt_ref(cardholder_id, to_program)
    dst_issuance = bank_ref(to_program, Purpose.ISSUANCE, cardholder_id)
    payer, payee = clearing_ref(OwnerKind.BANK, from_program.bank_id), clearing_ref(OwnerKind.BANK, to_program.bank_id)
    fees = clearing_ref(OwnerKind.ALLIANCE, ALLIANCE_ID)

    def post() -> LedgerTransaction:
        posting = begin(
            kind=Kind.EXCHANGE,
            key=idempotency_key,
            digest=digest,
            refs=[src_wallet, src_breakage, src_sink, dst_wallet, dst_debt, dst_issuance, payer, payee, fees],
            actor=actor,
            metadata={
                "cardholder_id": cardholder_id,
                "program_id": from_program.pk,
                "to_program_id": to_program.pk,
                "points_out": quote.points_out,
                "payer_units": quote.payer_units,
                "payee_units": quote.payee_units,
                "fee_units": quote.fee_units,
                "fee_rate": str(quote.fee_rate),
                "exchange_policy_id": quote.policy_id,
            },
            points=amount,
            rate=quote.rate,
        )
        wallet = posting.account(src_wallet)
        lots = expire_overdue(wallet, posting.account(src_breakage))
        spend(posting, wallet, posting.account(src_sink), amount, lots)
        posting.leg(posting.account(dst_issuance), -quote.points_out)
        credit_wallet(
            posting,
            wallet=posting.account(dst_wallet),
            debt=posting.account(dst_debt),
            program=to_program,
            amount=quote.points_out,
            earned_on=today(),
        )
        posting.leg(posting.account(payer), -quote.payer_units)
        posting.leg(posting.account(payee), quote.payee_units)
        posting.leg(posting.account(fees), quote.fee_units)
        return finish(posting)

    return keyed(LedgerTransaction, idempotency_key, digest, post)
