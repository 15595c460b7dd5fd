"""The demo's approval queue: a request of every kind waits for the alliance operators, made by the demo merchant's
sponsor bank operator through the services, with one approved and one rejected; a second run changes nothing."""

from __future__ import annotations

import io

import pytest

from alliance.approvals_demo import CHECKER, MERCHANT, REQUESTS
from alliance.demo import DemoContext, seed_approvals
from core.approvals import approval_kinds, approvals_made_by, approvals_waiting_for
from core.models import ApprovalRequest, AuditLog
from members.models import Cardholder
from merchants.models import Merchant
from rewards.models import Benefit, LedgerTransaction
from tests.factories import (
    AllianceOperatorFactory,
    CardholderFactory,
    MerchantFactory,
    PointsProgramFactory,
    bank_operator,
    card_at,
)

pytestmark = pytest.mark.django_db


def _state() -> dict[str, object]:
    return {
        "requests": sorted(ApprovalRequest.objects.values_list("kind", "status", "maker_id", "checker_id", "reason")),
        "audit": AuditLog.objects.count(),
        "benefits": sorted(Benefit.objects.values_list("title_en", "status")),
        "ledger": LedgerTransaction.objects.count(),
        "frozen": list(Merchant.objects.values_list("code", "payouts_frozen")),
    }


def test_the_demo_seeds_every_kind_waiting_for_the_alliance_and_a_second_run_changes_nothing() -> None:
    program = PointsProgramFactory()
    bank = program.bank
    merchant = MerchantFactory(code=MERCHANT, sponsor_bank=bank)
    maker = bank_operator(bank, username="op_demo")
    checker = AllianceOperatorFactory(username=CHECKER)
    other_checker = AllianceOperatorFactory(username="alliance-checker")
    card_at(CardholderFactory(), bank)
    out = io.StringIO()

    seed_approvals(DemoContext(out=out))

    requests = ApprovalRequest.objects.all()
    assert {r.maker_id for r in requests} == {maker.pk}
    pending = requests.filter(status=ApprovalRequest.Status.PENDING)
    # Every kind the queue knows is waiting once (the test-only kinds of other modules aside).
    demo_kinds = {kind.code for kind in approval_kinds() if not kind.code.startswith("tests.")}
    assert sorted(pending.values_list("kind", flat=True)) == sorted(demo_kinds)
    assert {wanted.kind for wanted in REQUESTS} == demo_kinds
    for user in (checker, other_checker):
        assert set(approvals_waiting_for(user)) == set(pending)
    assert set(approvals_made_by(maker)) == set(requests)
    assert list(approvals_waiting_for(maker)) == []
    decided = dict(requests.exclude(status=ApprovalRequest.Status.PENDING).values_list("kind", "status"))
    assert decided == {"rewards.points_adjustment": "approved", "merchants.settlement_account_change": "rejected"}
    assert requests.filter(status="approved", checker=checker).count() == 1
    assert LedgerTransaction.objects.filter(kind="adjust").count() == 1  # the approved adjustment posted
    merchant.refresh_from_db()
    assert merchant.payouts_frozen  # frozen so that lifting it can be asked; the request waits
    draft = Benefit.objects.get(bank=bank, title_en="CNY 20 off a fill-up")
    assert draft.status == Benefit.Status.DRAFT
    assert f"{pending.count()} waiting for {CHECKER} (asked by op_demo)" in out.getvalue()
    assert "not asked" not in out.getvalue()

    first = _state()
    seed_approvals(DemoContext(out=io.StringIO()))
    assert _state() == first

    # A request decided or expired since is not asked again either.
    ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).update(status=ApprovalRequest.Status.EXPIRED)
    before = _state()
    seed_approvals(DemoContext(out=io.StringIO()))
    assert _state() == before


def test_without_the_demo_merchant_or_its_operator_nothing_is_asked() -> None:
    AllianceOperatorFactory(username=CHECKER)
    seed_approvals(DemoContext())
    MerchantFactory(code=MERCHANT)  # no operator at its sponsor bank
    seed_approvals(DemoContext())
    assert ApprovalRequest.objects.count() == 0
    assert Cardholder.objects.count() == 0
