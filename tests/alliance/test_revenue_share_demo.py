"""The demo shares revenue for its months: terms approved by a second operator (and one awaiting approval), a fee for
every bank, running costs, a run per month and the last closed month with payments restated; a second run adds
nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest

from alliance.demo import DemoContext, seed_all
from alliance.models import AllianceCost, MembershipFee, RevenueSharePolicy, RevenueShareRun, RevenueShareStatement
from core.models import ApprovalRequest
from members.models import MemberBank
from tests.alliance.test_demo import demo_on_simulator  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def test_the_demo_shares_revenue_for_its_months(demo_on_simulator: Any) -> None:  # noqa: F811
    ctx = seed_all(DemoContext(scale="small", out=io.StringIO()))
    assert ("alliance operator, second pair of eyes (admin)", "alliance-checker") in [
        (role, user) for role, user, _ in ctx.logins
    ]
    policies = RevenueSharePolicy.objects.order_by("version")
    assert [p.status for p in policies] == ["approved", "draft"]
    approved, proposal = policies
    requests = ApprovalRequest.objects.filter(kind="alliance.revenue_share_terms", payload__model="revenuesharepolicy")
    made = requests.get(result_id=str(approved.pk))
    assert (made.status, made.maker.username, made.checker.username) == ("approved", "alliance-checker", "alliance")  # type: ignore[union-attr]
    waiting = requests.get(payload__version_id=proposal.pk)
    assert (waiting.status, waiting.maker.username) == ("pending", "alliance-checker")
    banks = MemberBank.objects.count()
    assert MembershipFee.objects.filter(status="approved").values("bank").distinct().count() == banks

    runs = RevenueShareRun.objects.order_by("month", "version")
    months = sorted({run.month for run in runs})
    assert len(months) >= 2  # the history's months to this one, each run
    assert all(run.statements.count() == banks for run in runs)
    for run in runs:
        statements = run.statements.all()
        assert sum(s.amount for s in statements) == run.pool
        assert sum(s.cost for s in statements) == run.costs
    restated = runs.get(version=2)
    assert restated.previous is not None
    assert restated.previous.status == "superseded"
    assert restated.costs > restated.previous.costs  # the late invoice
    assert RevenueShareStatement.objects.filter(run=restated).exclude(cost_difference=0).exists()
    assert runs.filter(status="provisional").count() == 1  # this month, still open
    assert runs.exclude(fee_share_units=0).exists()  # the demo's payments paid the alliance its part of the fees

    counts = (RevenueSharePolicy.objects.count(), MembershipFee.objects.count(), AllianceCost.objects.count())
    seed_all(DemoContext(scale="small", out=io.StringIO()))
    assert RevenueShareRun.objects.count() == runs.count()
    assert (RevenueSharePolicy.objects.count(), MembershipFee.objects.count(), AllianceCost.objects.count()) == counts
