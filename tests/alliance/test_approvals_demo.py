"""The demo's approval queue: a request of every kind waits, made through the services by the operator each kind
asks for (of the demo merchant's sponsor bank, of a statement's acquirer, of a held card's issuer, or an alliance
operator for terms) and seen by the right checkers, with one approved and one rejected; a second run changes
nothing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.utils import timezone

from alliance.approvals_demo import CHECKER, MERCHANT, REQUESTS, TERMS_MAKER
from alliance.demo import DemoContext, seed_approvals
from alliance.models import RevenueSharePolicy
from core.approvals import approval_kinds, approvals_made_by, approvals_waiting_for
from core.models import ApprovalRequest, AuditLog
from members.models import Cardholder
from merchants.models import Merchant, SettlementAccount
from payments.models import PaymentIntent, Payout, ReconciliationException, SettlementBatch
from rewards.models import Benefit, LedgerTransaction
from tests.factories import (
    AllianceOperatorFactory,
    CardholderFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    bank_operator,
    card_at,
    make_settlement_batch,
)

pytestmark = pytest.mark.django_db


def _state() -> dict[str, object]:
    return {
        "requests": sorted(ApprovalRequest.objects.values_list("kind", "status", "maker_id", "checker_id", "reason")),
        "audit": AuditLog.objects.count(),
        "benefits": sorted(Benefit.objects.values_list("title_en", "status")),
        "ledger": LedgerTransaction.objects.count(),
        "frozen": list(Merchant.objects.values_list("code", "payouts_frozen")),
        "payouts": sorted(Payout.objects.values_list("batch_id", "status")),
        "held": sorted(PaymentIntent.objects.values_list("public_id", "risk_review", "status")),
        "exceptions": sorted(ReconciliationException.objects.values_list("pk", "status")),
        "policies": sorted(RevenueSharePolicy.objects.values_list("version", "status")),
    }


def _open_cny_exception(acquirer: object) -> ReconciliationException:
    """What a statement raises: a capture the channel has and we do not, open, at `acquirer`'s channel."""
    channel = ChannelFactory(acquirer=acquirer)
    return ReconciliationException.objects.create(
        key=f"demo:{channel.pk}",
        channel=channel,
        business_date=dt.date(2026, 3, 2),
        kind="missing_with_us",
        txn_kind="capture",
        reference="demo-1",
        currency="CNY",
        channel_amount=4_800,
    )


def _held_for_review(merchant: Merchant, issuer: object, amount: int) -> PaymentIntent:
    """A payment authorised and held for risk review, on a card of `issuer`."""
    card = card_at(CardholderFactory(), issuer)
    return PaymentIntent.objects.create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        issuer=issuer,
        acquirer=merchant.sponsor_bank,
        channel=ChannelFactory(acquirer=merchant.sponsor_bank),
        amount=amount,
        amount_capturable=amount,
        status="requires_capture",
        risk_review=True,
        risk_outcome="review",
        risk_review_deadline=timezone.now() + dt.timedelta(days=2),
    )


def test_the_demo_seeds_every_kind_waiting_for_the_alliance_and_a_second_run_changes_nothing() -> None:
    program = PointsProgramFactory()
    bank = program.bank
    merchant = MerchantFactory(code=MERCHANT, sponsor_bank=bank, payouts_frozen=True, frozen_reason="chargebacks")
    maker = bank_operator(bank, username="op_demo")
    checker = AllianceOperatorFactory(username=CHECKER)
    other_checker = AllianceOperatorFactory(username=TERMS_MAKER)
    card_at(CardholderFactory(), bank)
    # What the settlement, reconciliation and payment steps leave: a frozen merchant's held batch, an open CNY
    # difference at another bank's channel, a large payment held for review on a third bank's card (and a small one,
    # which one operator releases alone, so it is not asked about).
    SettlementAccount.objects.create(
        merchant=merchant, account_name=merchant.legal_name, bank_name="B", account_encrypted="x", account_last4="1234"
    )
    ChannelFactory(acquirer=bank, payouts=True)
    held_batch = make_settlement_batch(merchant, status="held", hold_reason="merchant frozen")
    acquirer, issuer = MemberBankFactory(), MemberBankFactory()
    acquirer_maker, issuer_maker = bank_operator(acquirer), bank_operator(issuer)
    issuer_checker = bank_operator(issuer)
    exception = _open_cny_exception(acquirer)
    small = _held_for_review(merchant, issuer, 10_000)
    large = _held_for_review(merchant, issuer, 2_680_000)
    out = io.StringIO()

    seed_approvals(DemoContext(out=out))

    requests = ApprovalRequest.objects.all()
    assert "not asked" not in out.getvalue(), out.getvalue()
    makers = dict(requests.filter(status=ApprovalRequest.Status.PENDING).values_list("kind", "maker_id"))
    assert makers == {
        "rewards.points_adjustment": maker.pk,
        "merchants.payouts_unfreeze": maker.pk,
        "merchants.settlement_account_change": maker.pk,
        "rewards.benefit_publish": maker.pk,
        "payments.payout_release": maker.pk,
        "payments.write_off": acquirer_maker.pk,
        "payments.risk_review_release": issuer_maker.pk,
        "alliance.revenue_share_terms": other_checker.pk,
    }
    pending = requests.filter(status=ApprovalRequest.Status.PENDING)
    # Every kind the queue knows is waiting once (the test-only kinds of other modules aside).
    demo_kinds = {kind.code for kind in approval_kinds() if not kind.code.startswith("tests.")}
    assert sorted(pending.values_list("kind", flat=True)) == sorted(demo_kinds)
    assert {wanted.kind for wanted in REQUESTS} == demo_kinds
    assert set(approvals_waiting_for(checker)) == set(pending)
    assert set(approvals_waiting_for(other_checker)) == set(pending.exclude(kind="alliance.revenue_share_terms"))
    assert list(approvals_waiting_for(issuer_checker)) == [pending.get(kind="payments.risk_review_release")]
    assert set(approvals_made_by(maker)) == set(requests.filter(maker=maker))
    assert requests.filter(maker=maker).count() == 7  # five waiting, two decided
    assert list(approvals_waiting_for(maker)) == []
    # What each asked about: the held batch (its payout made, waiting), the exception, the large payment, a draft.
    release = pending.get(kind="payments.payout_release")
    assert Payout.objects.get(pk=release.payload["payout_id"]).batch_id == held_batch.pk
    assert SettlementBatch.objects.get(pk=held_batch.pk).status == "held"
    assert pending.get(kind="payments.write_off").payload["exception_id"] == exception.pk
    assert pending.get(kind="payments.write_off").bank_id == acquirer.pk
    assert pending.get(kind="payments.risk_review_release").payload["payment_id"] == large.public_id
    for payment in (small, large):
        payment.refresh_from_db()
        assert (payment.risk_review, payment.status) == (True, "requires_capture")  # still held
    terms = pending.get(kind="alliance.revenue_share_terms")
    assert terms.bank_id is None
    assert RevenueSharePolicy.objects.get(pk=terms.payload["version_id"]).status == "draft"
    decided = dict(requests.exclude(status=ApprovalRequest.Status.PENDING).values_list("kind", "status"))
    assert decided == {"rewards.points_adjustment": "approved", "merchants.settlement_account_change": "rejected"}
    assert requests.filter(status="approved", checker=checker).count() == 1
    assert LedgerTransaction.objects.filter(kind="adjust").count() == 1  # the approved adjustment posted
    merchant.refresh_from_db()
    assert merchant.payouts_frozen  # frozen so that lifting it can be asked; the request waits
    draft = Benefit.objects.get(bank=bank, title_en="CNY 20 off a fill-up")
    assert draft.status == Benefit.Status.DRAFT
    assert f"{pending.count()} waiting for {CHECKER}" in out.getvalue()
    assert "not asked" not in out.getvalue()

    first = _state()
    seed_approvals(DemoContext(out=io.StringIO()))
    assert _state() == first

    # A request decided or expired since is not asked again either.
    ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).update(status=ApprovalRequest.Status.EXPIRED)
    before = _state()
    seed_approvals(DemoContext(out=io.StringIO()))
    assert _state() == before


def test_terms_already_waiting_are_not_asked_again() -> None:
    """The revenue-share step leaves a proposal waiting: the demo asks for no second one."""
    from alliance import services

    bank = PointsProgramFactory().bank
    MerchantFactory(code=MERCHANT, sponsor_bank=bank)
    bank_operator(bank)
    AllianceOperatorFactory(username=CHECKER)
    proposer = AllianceOperatorFactory(username=TERMS_MAKER)
    weights = {"benefits": "0.5", "issuer_volume": "0.5"}
    proposal = services.policy_save(
        policy_id=None,
        weights=weights,
        cost_weights=weights,
        effective_from=dt.date(2027, 1, 1),
        reason="proposal",
        actor=proposer,
    )
    waiting = services.terms_submit(model=RevenueSharePolicy, version_id=proposal.pk, actor=proposer)

    seed_approvals(DemoContext())

    terms = ApprovalRequest.objects.filter(kind="alliance.revenue_share_terms")
    assert list(terms) == [waiting]
    assert RevenueSharePolicy.objects.count() == 1


def test_without_the_demo_merchant_or_its_operator_nothing_is_asked() -> None:
    AllianceOperatorFactory(username=CHECKER)
    seed_approvals(DemoContext())
    MerchantFactory(code=MERCHANT)  # no operator at its sponsor bank
    seed_approvals(DemoContext())
    assert ApprovalRequest.objects.count() == 0
    assert Cardholder.objects.count() == 0
