"""The demo's approval queue: requests of every kind, made through the services as operators would.

One demo bank operator (the operator of DEMO-FUEL's sponsor bank) asks; the alliance operators (`alliance`,
`alliance-checker`) find the requests under *Waiting for me*. One request of each kind waits, and two more make the
history: one approved, one rejected by `alliance`.

A kind is added with one small function (`DemoSeeding`, reason → the request it made through the kind's service, or
None when the demo has nothing for it to be about) and one line in `REQUESTS`. Idempotent: a request is found again by
its kind, maker and reason, and a second run makes none of those again, whatever became of them (decided, expired).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from core.approvals import approval_approve, approval_reject
from core.errors import MengkaError
from core.models import ApprovalRequest
from members.models import BankOperator, BindingStatus, Card, MemberBank, PointsProgram
from merchants import services as merchants
from merchants.models import Merchant
from rewards import services as rewards
from rewards.models import Benefit

MERCHANT = "DEMO-FUEL"  # the merchant the requests are about; its sponsor bank's operator makes them
CHECKER = "alliance"  # decides the history's requests
FREEZE_REASON = "演示：拒付调查中 / demo: chargebacks under review"


@dataclass(frozen=True)
class DemoSeeding:
    maker: Any  # the bank operator who asks
    bank: MemberBank
    merchant: Merchant


Make = Callable[[DemoSeeding, str], "ApprovalRequest | None"]


# --- one function per kind -------------------------------------------------------------------------------------------


def points_adjustment(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    program = PointsProgram.objects.filter(bank=seeding.bank, active=True).first()
    card = Card.objects.filter(bank=seeding.bank, status=BindingStatus.ACTIVE).order_by("id").first()
    if program is None or card is None:
        return None
    return rewards.adjustment_request(
        cardholder_id=card.cardholder_id, program=program, amount=500, reason=reason, requested_by=seeding.maker
    )


def payouts_unfreeze(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    if not seeding.merchant.payouts_frozen:  # the settlement demo freezes it when the simulator answered
        merchants.payouts_freeze(merchant_id=seeding.merchant.pk, reason=FREEZE_REASON, actor=seeding.maker)
    return merchants.payouts_unfreeze_request(merchant_id=seeding.merchant.pk, note=reason, actor=seeding.maker)


def settlement_account_change(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    return merchants.settlement_change_request(
        merchant=seeding.merchant,
        account_name=seeding.merchant.legal_name,
        bank_name=seeding.bank.name_zh,
        account_number=f"6222 0300 0000 {seeding.merchant.pk % 10_000:04d}",
        reason=reason,
        actor=seeding.maker,
    )


DRAFT_BENEFIT = ("加油立减券 ¥20", "CNY 20 off a fill-up")


def benefit_publish(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    zh, en = DRAFT_BENEFIT
    benefit = Benefit.objects.filter(bank=seeding.bank, title_en=en).first()
    if benefit is None:
        now = timezone.now()
        benefit = Benefit.objects.create(
            bank=seeding.bank,
            funding_merchant=seeding.merchant,
            merchant=seeding.merchant,
            kind=Benefit.Kind.VOUCHER,
            title_zh=zh,
            title_en=en,
            description_zh=f"{seeding.merchant.display_name}:加油满 ¥200 立减 ¥20。",
            description_en=f"{seeding.merchant.display_name}: CNY 20 off a fill-up of CNY 200 or more.",
            pricing=Benefit.Pricing.CNY,
            price_cny_units=200_000,
            stock_total=300,
            stock_left=300,
            limit_per_month=1,
            valid_from=now,
            valid_until=now + dt.timedelta(days=180),
        )
    if benefit.status != Benefit.Status.DRAFT:
        return None
    return rewards.benefit_request_publish(benefit_id=benefit.pk, operator=seeding.maker, reason=reason)


# --- what the demo asks for ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoRequest:
    kind: str
    make: Make
    reason: str  # what the maker says, and what finds the request again
    outcome: str = ApprovalRequest.Status.PENDING  # or approved / rejected (by `CHECKER`, for the history)
    rejection: str = ""


REQUESTS: tuple[DemoRequest, ...] = (
    DemoRequest(
        rewards.POINTS_ADJUSTMENT,
        points_adjustment,
        "补录积分：终端离线期间的消费未计积分 / points missed while the terminal was offline",
    ),
    DemoRequest(
        merchants.PAYOUTS_UNFREEZE,
        payouts_unfreeze,
        "拒付调查已结束，商户已补充材料 / the chargeback review is closed",
    ),
    DemoRequest(
        merchants.SETTLEMENT_ACCOUNT_CHANGE,
        settlement_account_change,
        "商户更换结算银行 / the merchant moved its settlement account",
    ),
    DemoRequest(rewards.BENEFIT_PUBLISH, benefit_publish, "条款已与商户确认 / terms checked with the merchant"),
    DemoRequest(
        rewards.POINTS_ADJUSTMENT,
        points_adjustment,
        "客诉补偿：活动积分漏发 / goodwill: campaign points not credited",
        outcome=ApprovalRequest.Status.APPROVED,
    ),
    DemoRequest(
        merchants.SETTLEMENT_ACCOUNT_CHANGE,
        settlement_account_change,
        "商户申请更换为个人账户 / the merchant asked to be paid into another account",
        outcome=ApprovalRequest.Status.REJECTED,
        rejection="缺少开户证明 / the bank's letter confirming the account is missing",
    ),
)


def seed_approvals(ctx: Any) -> None:
    merchant = Merchant.objects.filter(code=MERCHANT).select_related("sponsor_bank").first()
    checker = get_user_model().objects.filter(username=CHECKER).first()
    operator = (
        BankOperator.objects.filter(bank_id=merchant.sponsor_bank_id, role=BankOperator.Role.OPERATOR)
        .select_related("user")
        .order_by("id")
        .first()
        if merchant is not None
        else None
    )
    if merchant is None or checker is None or operator is None:
        return
    seeding = DemoSeeding(maker=operator.user, bank=merchant.sponsor_bank, merchant=merchant)
    made = set(ApprovalRequest.objects.filter(maker=seeding.maker).values_list("kind", "reason"))
    for wanted in REQUESTS:
        if (wanted.kind, wanted.reason) in made:
            continue
        try:
            request = wanted.make(seeding, wanted.reason)
            if request is None:
                continue
            if wanted.outcome == ApprovalRequest.Status.APPROVED:
                approval_approve(request_id=request.pk, checker=checker)
            elif wanted.outcome == ApprovalRequest.Status.REJECTED:
                approval_reject(request_id=request.pk, checker=checker, reason=wanted.rejection)
        except MengkaError as exc:
            if ctx.out is not None:
                ctx.out.write(f"  approvals: {wanted.make.__name__} not asked: {exc.message}\n")
    if ctx.out is not None:
        waiting = ApprovalRequest.objects.filter(maker=seeding.maker, status=ApprovalRequest.Status.PENDING).count()
        ctx.out.write(f"  approvals: {waiting} waiting for {CHECKER} (asked by {seeding.maker.username})\n")
