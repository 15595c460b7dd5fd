"""Fees: the merchant discount rate in force at capture, and who gets which part of it.

Fee amounts are integers in hundredths of a minor unit (0.0001 CNY): a 0.38 % rate on 1.00 CNY is 38, not a rounded
0 fen. The fee is `round_half_even(amount × MDR%)` hundredths plus the fixed fee, never more than the amount. It is
split by the schedule's shares with `core.money.allocate`, so the parts add up exactly to the fee. On a refund each
party hands back, cumulatively, floor(its part × refunded total / captured total): so several partial refunds never
drift, and a full refund hands back every part exactly. A reversal (撤销) hands back whatever is left.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum

from core.audit import audit_record, snapshot
from core.errors import ValidationFailed
from core.money import allocate, proportional_floor, quantize
from merchants.models import Merchant

from .models import FeeParty, FeeSchedule, FeeSplit, PaymentIntent, PaymentMethod, Refund

PARTIES = (FeeParty.ISSUER, FeeParty.ACQUIRER, FeeParty.CHANNEL, FeeParty.ALLIANCE)
HUNDREDTHS = 100


def schedule_in_force(*, merchant: Merchant, method: str, at: dt.datetime) -> FeeSchedule | None:
    """The merchant's own schedule before the default, a method's own before "any method", then the latest start."""
    from .routing import load_config

    candidates = [
        schedule
        for schedule in load_config().fee_schedules
        if schedule.merchant_id in (merchant.pk, None)
        and schedule.method in (method, "")
        and schedule.effective_from <= at
        and (schedule.effective_to is None or schedule.effective_to > at)
    ]
    best: FeeSchedule | None = None
    best_key: tuple[bool, bool, dt.datetime] | None = None
    for schedule in candidates:
        key = (schedule.merchant_id is not None, schedule.method != "", schedule.effective_from)
        if best_key is None or key > best_key:
            best, best_key = schedule, key
    return best


def fee_for(schedule: FeeSchedule, amount: int) -> int:
    """The fee on `amount` minor units, in hundredths of a minor unit (amount × percent is already hundredths)."""
    percent_part = int(quantize(Decimal(amount) * schedule.mdr_percent, 0))
    return min(percent_part + schedule.fixed * HUNDREDTHS, amount * HUNDREDTHS)


def split(schedule: FeeSchedule, fee: int) -> dict[str, int]:
    shares = schedule.shares()
    return dict(zip(PARTIES, allocate(fee, [shares[party] for party in PARTIES]), strict=True))


def refunded_so_far(parts: dict[str, int], refunded_total: int, captured_total: int) -> dict[str, int]:
    """What each party has handed back once `refunded_total` of `captured_total` is refunded."""
    return {party: proportional_floor(part, refunded_total, captured_total) for party, part in parts.items()}


def _bank_of(intent: PaymentIntent, party: str) -> int | None:
    if party == FeeParty.ISSUER:
        return intent.issuer_id
    if party == FeeParty.ACQUIRER:
        return intent.acquirer_id
    if party == FeeParty.CHANNEL:
        return intent.channel.acquirer_id if intent.channel is not None else None
    return None


def _parts(intent: PaymentIntent) -> tuple[FeeSchedule | None, dict[str, int], dict[str, int]]:
    """The capture parts of a payment and what each party has handed back so far."""
    rows = list(FeeSplit.objects.of(intent).values_list("event", "party", "amount", "schedule_id"))
    charged = {party: amount for event, party, amount, _ in rows if event == FeeSplit.Event.CAPTURE}
    returned = dict.fromkeys(charged, 0)
    for event, party, amount, _ in rows:
        if event != FeeSplit.Event.CAPTURE:
            returned[party] -= amount
    schedule_id = next((schedule for event, _, _, schedule in rows if event == FeeSplit.Event.CAPTURE), None)
    schedule = FeeSchedule.objects.get(pk=schedule_id) if schedule_id else None
    return schedule, charged, returned


def capture_fee(intent: PaymentIntent, *, at: dt.datetime) -> tuple[int, list[FeeSplit]]:
    """The fee in force at capture on the amount captured, and its split as new rows (not written): (0, []) for a
    test-mode payment, which owes no one anything, or where no schedule is in force."""
    if not intent.livemode:
        return 0, []
    schedule = schedule_in_force(merchant=intent.merchant, method=intent.method, at=at)
    if schedule is None:
        return 0, []
    fee = fee_for(schedule, intent.amount_captured)
    rows = [
        FeeSplit(
            payment=intent,
            payment_created_at=intent.created_at,
            schedule=schedule,
            event=FeeSplit.Event.CAPTURE,
            party=party,
            bank_id=_bank_of(intent, party),
            amount=amount,
        )
        for party, amount in split(schedule, fee).items()
    ]
    return fee, rows


def record_capture(intent: PaymentIntent, *, at: dt.datetime) -> int:
    """Charges the fee in force at capture, in the caller's transaction (the payment row is locked). Returns it."""
    # Called once per capture: the capture's guarded UPDATE admits one caller, and a unique constraint backs it.
    if intent.amount_captured <= 0:
        return intent.fee
    fee, rows = capture_fee(intent, at=at)
    if not rows:
        return 0
    FeeSplit.objects.bulk_create(rows)
    intent.fee = fee
    return fee


def record_refund(intent: PaymentIntent, refund: Refund) -> int:
    """Hands back the fee for a refund by the cumulative rule (caller's transaction, payment locked, amount_refunded
    already including this refund). Returns the amount handed back."""
    schedule, charged, returned = _parts(intent)
    if schedule is None:
        return 0
    target = refunded_so_far(charged, intent.amount_refunded, intent.amount_captured)
    return _hand_back(intent, schedule, FeeSplit.Event.REFUND, refund, target, returned)


def record_reversal(intent: PaymentIntent) -> int:
    """A captured payment undone (撤销): every party hands back what it has left."""
    schedule, charged, returned = _parts(intent)
    if schedule is None:
        return 0
    return _hand_back(intent, schedule, FeeSplit.Event.REVERSAL, None, charged, returned)


def _hand_back(
    intent: PaymentIntent,
    schedule: FeeSchedule,
    event: str,
    refund: Refund | None,
    target: dict[str, int],
    returned: dict[str, int],
) -> int:
    deltas = {party: target[party] - returned[party] for party in target}
    FeeSplit.objects.bulk_create(
        FeeSplit(
            payment=intent,
            payment_created_at=intent.created_at,
            refund=refund,
            schedule=schedule,
            event=event,
            party=party,
            bank_id=_bank_of(intent, party),
            amount=-delta,
        )
        for party, delta in deltas.items()
        if delta or refund is not None
    )
    handed_back = sum(deltas.values())
    intent.fee_returned += handed_back
    return handed_back


def net_by_party(intent: PaymentIntent) -> dict[str, int]:
    rows = FeeSplit.objects.of(intent).values("party").annotate(total=Sum("amount"))
    return {row["party"]: row["total"] for row in rows}


@transaction.atomic
def fee_schedule_create(
    *,
    mdr_percent: Decimal,
    issuer_share: Decimal,
    acquirer_share: Decimal,
    channel_share: Decimal,
    alliance_share: Decimal,
    effective_from: dt.datetime,
    effective_to: dt.datetime | None = None,
    merchant: Merchant | None = None,
    method: str = "",
    fixed: int = 0,
    actor: Any = None,
) -> FeeSchedule:
    """A new version of a schedule. An open-ended earlier version of the same merchant and method ends where this
    one starts; any other overlap is refused."""
    if method and method not in PaymentMethod.values:
        raise ValidationFailed(f"Unknown payment method {method!r}.", code="invalid_method", param="method")
    shares = [issuer_share, acquirer_share, channel_share, alliance_share]
    if any(share < 0 for share in shares) or sum(shares, Decimal(0)) != 100:
        raise ValidationFailed(
            "The issuer, acquirer, channel and alliance shares must add up to exactly 100 %.",
            code="fee_shares_incomplete",
            param="issuer_share",
        )
    if effective_to is not None and effective_to <= effective_from:
        raise ValidationFailed("The period ends before it starts.", code="invalid_period", param="effective_to")
    same = FeeSchedule.objects.select_for_update().filter(merchant=merchant, method=method)
    previous = same.filter(effective_to__isnull=True, effective_from__lt=effective_from).first()
    if previous is not None:
        before = snapshot(previous)
        previous.effective_to = effective_from
        previous.save(update_fields=["effective_to"])
        audit_record(actor=actor, action="fee_schedule.close", obj=previous, before=before, after=snapshot(previous))
    overlapping = same.filter(Q(effective_to__isnull=True) | Q(effective_to__gt=effective_from))
    if effective_to is not None:
        overlapping = overlapping.filter(effective_from__lt=effective_to)
    if overlapping.exists():
        raise ValidationFailed(
            "Another schedule for this merchant and method is in force during that period.",
            code="fee_schedule_overlap",
            param="effective_from",
        )
    schedule = FeeSchedule(
        merchant=merchant,
        method=method,
        mdr_percent=mdr_percent,
        fixed=fixed,
        issuer_share=issuer_share,
        acquirer_share=acquirer_share,
        channel_share=channel_share,
        alliance_share=alliance_share,
        effective_from=effective_from,
        effective_to=effective_to,
    )
    schedule.full_clean()
    schedule.save()
    from .routing import config_changed

    config_changed()  # this process at once; the others again once the row is committed
    transaction.on_commit(config_changed)
    audit_record(
        actor=actor,
        action="fee_schedule.create",
        obj=schedule,
        after=snapshot(schedule),
        bank_id=merchant.sponsor_bank_id if merchant else None,
    )
    return schedule
