"""The demo's approval queue: requests of every kind, made through the services as operators would.

Each kind's maker is the operator the service asks for: the operator of DEMO-FUEL's sponsor bank for its merchant's
and its bank's requests and for a payout's release, of the acquirer bank for a reconciliation write-off, of the card's
issuer for a held payment's release, and the alliance operator `alliance-checker` for revenue-share terms. The alliance
operators (`alliance`, `alliance-checker`) find the bank requests under *Waiting for me*; the terms wait for `alliance`
(a maker never checks their own). One request of each kind waits, and two more make the history: one approved, one
rejected by `alliance`.

A kind is added with one small function (`DemoSeeding`, reason → the request it made through the kind's service, or
None when the demo has nothing for it to be about) and one line in `REQUESTS`. Idempotent: a request is found again by
its kind and reason, and a second run makes none of those again, whatever became of them (decided, expired).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, Q, When
from django.utils import timezone

from core.approvals import approval_approve, approval_reject, approvals_waiting_for
from core.calendar import local_now
from core.errors import MengkaError
from core.models import ApprovalRequest
from members.models import BankOperator, BindingStatus, Card, MemberBank, PointsProgram
from merchants import services as merchants
from merchants.models import Merchant
from payments import services as payments
from payments.models import PaymentIntent, Payout, ReconciliationException, SettlementBatch
from payments.selectors import payout_channel
from rewards import services as rewards
from rewards.models import Benefit

from . import services as alliance_services
from .models import Approval, RevenueSharePolicy

MERCHANT = "DEMO-FUEL"  # the merchant the requests are about; its sponsor bank's operator makes them
CHECKER = "alliance"  # decides the history's requests
TERMS_MAKER = "alliance-checker"  # proposes the terms, which `CHECKER` decides
FREEZE_REASON = "演示：拒付调查中 / demo: chargebacks under review"


@dataclass(frozen=True)
class DemoSeeding:
    maker: Any  # the operator of the merchant's sponsor bank: who asks, unless the kind wants another
    bank: MemberBank
    merchant: Merchant


def operator_of(bank_id: int | None) -> Any:
    """The bank's first demo operator (a user), or None when it has none."""
    operator = (
        BankOperator.objects.filter(bank_id=bank_id, role=BankOperator.Role.OPERATOR)
        .select_related("user")
        .order_by("id")
        .first()
    )
    return operator.user if operator is not None else None


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


def payout_release(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    """A frozen merchant's held batch that can be paid (a settlement account, a payout channel of its sponsor bank in
    its currency; DEMO-FUEL's first), else a payout waiting above the threshold, asked by an operator of the merchant's
    sponsor bank."""
    first_ours = Case(When(merchant=seeding.merchant, then=0), default=1)
    batches = (
        SettlementBatch.objects.filter(
            status=SettlementBatch.Status.HELD,
            merchant__payouts_frozen=True,
            merchant__settlement_account__isnull=False,
            net__gt=0,
        )
        .exclude(payouts__status=Payout.Status.PENDING_APPROVAL)
        .select_related("merchant")
        .order_by(first_ours, "period", "id")
    )
    payable = [
        batch
        for batch in batches
        if payout_channel(sponsor_bank_id=batch.merchant.sponsor_bank_id, currency=batch.currency, livemode=True)
    ]
    payouts = (
        Payout.objects.filter(status=Payout.Status.PENDING_APPROVAL)
        .select_related("merchant")
        .order_by(first_ours, "id")
    )
    targets: list[SettlementBatch | Payout] = [*payable[:5], *payouts[:5]]
    for target in targets:
        maker = operator_of(target.merchant.sponsor_bank_id)
        if maker is None or (
            isinstance(target, Payout) and payments.payout_release_requests_pending(target.pk).exists()
        ):
            continue
        return payments.payout_release_request(target=target, operator=maker, reason=reason)
    return None


def write_off(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    """An open CNY reconciliation exception, asked by an operator of the acquirer bank whose channel's statement it
    is (the demo's statements raise one of every class)."""
    exceptions = (
        ReconciliationException.objects.filter(status=ReconciliationException.Status.OPEN, currency="CNY")
        .select_related("channel")
        .order_by("business_date", "id")
    )
    for exception in exceptions[:20]:
        maker = operator_of(exception.channel.acquirer_id)
        if maker is None or payments.write_off_requests_pending(exception.pk).exists():
            continue
        if payments.write_off_amount(exception) > 0:
            return payments.exception_write_off_request(exception_id=exception.pk, operator=maker, note=reason)
    return None


def risk_review_release(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    """A payment held for risk review at or above the second-approval threshold (the demo's large review cases): its
    first approval, by an operator of the card's issuer, is the request."""
    now = timezone.now()
    held = (
        PaymentIntent.objects.filter(risk_review=True, status=PaymentIntent.Status.REQUIRES_CAPTURE)
        .filter(Q(risk_review_deadline__isnull=True) | Q(risk_review_deadline__gt=now))
        .filter(Q(currency="CNY", amount__gte=settings.RISK_REVIEW_SECOND_APPROVAL_MINOR) | ~Q(currency="CNY"))
        .exclude(issuer__isnull=True)
        .order_by("created_at", "id")
    )
    for intent in held[:20]:
        maker = operator_of(intent.issuer_id)
        if maker is None or payments.risk_release_requests_pending(intent.public_id).exists():
            continue
        payments.risk_review_approve(payment_id=intent.public_id, actor=maker, reason=reason)
        return payments.risk_release_requests_pending(intent.public_id).filter(maker=maker).first()
    return None


PROPOSED_POLICY = (  # (metric, weight): more weight on the benefits a bank contributes
    ("benefits", "0.25"),
    ("active_cardholders", "0.20"),
    ("issuer_volume", "0.20"),
    ("merchants_sponsored", "0.10"),
    ("sponsored_volume", "0.15"),
    ("points_exchanged_in", "0.10"),
)
PROPOSED_COSTS = (("active_cardholders", "0.30"), ("issuer_volume", "0.40"), ("merchants_sponsored", "0.30"))


def revenue_share_terms(seeding: DemoSeeding, reason: str) -> ApprovalRequest | None:
    """A draft of the revenue-share policy from next month, submitted by `TERMS_MAKER` for `CHECKER` to decide; none
    when terms already wait (the revenue-share demo's own proposal)."""
    maker = get_user_model().objects.filter(username=TERMS_MAKER).first()
    if (
        maker is None
        or ApprovalRequest.objects.filter(
            kind=alliance_services.TERMS_APPROVAL, status=ApprovalRequest.Status.PENDING
        ).exists()
    ):
        return None
    draft = RevenueSharePolicy.objects.filter(status=Approval.DRAFT, reason=reason).order_by("-version").first()
    if draft is None:
        month = (local_now().date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        draft = alliance_services.policy_save(
            policy_id=None,
            weights={metric: Decimal(weight) for metric, weight in PROPOSED_POLICY},
            cost_weights={metric: Decimal(weight) for metric, weight in PROPOSED_COSTS},
            effective_from=month,
            reason=reason,
            actor=maker,
        )
    return alliance_services.terms_submit(model=RevenueSharePolicy, version_id=draft.pk, actor=maker)


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
        payments.PAYOUT_RELEASE_KIND.code,
        payout_release,
        "冻结期间的结算款，经核实可放款 / the held funds were checked and may be paid",
    ),
    DemoRequest(
        payments.WRITE_OFF_KIND.code,
        write_off,
        "差额经核对无法追回，申请核销 / the difference cannot be recovered",
    ),
    DemoRequest(
        payments.RISK_REVIEW_RELEASE_KIND.code,
        risk_review_release,
        "已电话核实持卡人本人交易 / the cardholder confirmed the payment by phone",
    ),
    DemoRequest(
        alliance_services.TERMS_APPROVAL,
        revenue_share_terms,
        "权益贡献与发卡交易额并重 / benefits weighted as much as issuing volume",
    ),
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
    operator = operator_of(merchant.sponsor_bank_id) if merchant is not None else None
    if merchant is None or checker is None or operator is None:
        return
    seeding = DemoSeeding(maker=operator, bank=merchant.sponsor_bank, merchant=merchant)
    made = set(ApprovalRequest.objects.values_list("kind", "reason"))
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
        waiting = approvals_waiting_for(checker).count()
        ctx.out.write(f"  approvals: {waiting} waiting for {CHECKER}\n")
