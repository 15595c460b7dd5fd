"""The revenue share in the admin: who sees which statement, the downloads, the chart drawn with the local script,
and the four-eyes actions and the run form going through the services."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from alliance.models import RevenueSharePolicy, RevenueShareRun
from core.models import ApprovalRequest
from tests.alliance.revenue_fixture import this_month
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    MemberBankFactory,
    bank_operator,
    make_revenue_policy,
    make_revenue_run,
    make_revenue_statement,
)
from tests.i18n import shown

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def statements() -> dict[str, Any]:
    """Two versions of this month (the second restating) for banks SA and SB, and last month's first version."""
    a, b = MemberBankFactory(code="SA", brand_colour="#112233"), MemberBankFactory(code="SB")
    month = this_month()
    earlier = make_revenue_run(month=(month - dt.timedelta(days=1)).replace(day=1), pool=1_000)
    make_revenue_statement(earlier, a, share=Decimal("0.25"), amount=250, cost=0, net=250)
    make_revenue_statement(earlier, b, share=Decimal("0.75"), amount=750, cost=0, net=750)
    first = make_revenue_run(month=month, status="superseded", pool=10_000)
    make_revenue_statement(first, a, share=Decimal("0.6"), amount=6_000, cost=100, net=5_900)
    make_revenue_statement(first, b, share=Decimal("0.4"), amount=4_000, cost=200, net=3_800)
    second = make_revenue_run(month=month, previous=first, pool=10_000, costs=400)
    lines = [
        {
            "metric": "issuer_volume",
            "value": 18_000,
            "total": 30_000,
            "normalised": "0.600000000000",
            "weight": "1.0000",
            "effective_weight": "1.000000000000",
            "weighted_share": "0.600000000000",
            "cost_weight": "1.0000",
            "cost_effective_weight": "1.000000000000",
            "cost_weighted_share": "0.600000000000",
        }
    ]
    sa = make_revenue_statement(
        second, a, share=Decimal("0.6"), amount=6_000, cost=240, net=5_760, issuer_volume=18_000, lines=lines,
        amount_difference=0, cost_difference=140, net_difference=-140,
    )  # fmt: skip
    sb = make_revenue_statement(
        second, b, share=Decimal("0.4"), amount=4_000, cost=160, net=3_840,
        amount_difference=0, cost_difference=-40, net_difference=40,
    )  # fmt: skip
    return {"a": a, "b": b, "sa": sa, "sb": sb, "second": second}


def test_a_bank_operator_sees_and_downloads_only_their_own_statements(statements: dict[str, Any]) -> None:
    client = _client(bank_operator(statements["a"]))
    listing = client.get(reverse("admin:alliance_revenuesharestatement_changelist"))
    assert listing.status_code == 200
    assert {s.bank.code for s in listing.context["cl"].queryset} == {"SA"}
    own, other = statements["sa"].pk, statements["sb"].pk
    for name in ("change", "csv", "print"):
        assert client.get(reverse(f"admin:alliance_revenuesharestatement_{name}", args=[own])).status_code == 200
        assert client.get(reverse(f"admin:alliance_revenuesharestatement_{name}", args=[other])).status_code == 404
    # The terms and the runs are the alliance's: a bank operator opens none of them.
    for model in ("revenuesharepolicy", "membershipfee", "alliancecost", "revenuesharerun"):
        assert client.get(reverse(f"admin:alliance_{model}_changelist")).status_code == 403


def test_the_csv_has_every_metric_and_the_differences(statements: dict[str, Any]) -> None:
    client = _client(AllianceOperatorFactory())
    response = client.get(reverse("admin:alliance_revenuesharestatement_csv", args=[statements["sa"].pk]))
    assert response["Content-Type"].startswith("text/csv")
    month = f"{this_month():%Y-%m}"
    assert f'filename="revenue-share-{month}-v2-SA.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[6][:6] == ["issuer_volume", "18000", "fen", "30000", "0.600000000000", "1.0000"]
    cells = {row[0]: row[1:] for row in rows if row}
    assert cells[shown("share (CNY)")] == ["60.00"]
    assert cells[shown("cost part (CNY)")] == ["2.40"]
    assert cells[shown("net (CNY)")] == ["57.60"]
    assert cells[shown("cost difference from the previous version (CNY)")] == ["1.40"]
    assert cells[shown("net difference from the previous version (CNY)")] == ["-1.40"]


def test_the_printable_statement_has_a_print_stylesheet_and_no_script(statements: dict[str, Any]) -> None:
    client = _client(bank_operator(statements["a"]))
    response = client.get(reverse("admin:alliance_revenuesharestatement_print", args=[statements["sa"].pk]))
    page = response.content.decode()
    assert "@media print" in page
    assert "<script" not in page.lower()
    assert "60.00 CNY" in page  # the share
    assert "-1.40 CNY" in page  # the net's difference from version 1
    download = client.get(
        reverse("admin:alliance_revenuesharestatement_print", args=[statements["sa"].pk]) + "?download=1"
    )
    assert "attachment" in download["Content-Disposition"]


def test_the_chart_uses_the_local_script_and_has_its_numbers_in_a_table(statements: dict[str, Any]) -> None:
    client = _client(AllianceOperatorFactory())
    response = client.get(reverse("admin:alliance_revenuesharestatement_chart"))
    assert response.status_code == 200
    page = response.content.decode()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert "/static/core/vendor/chartjs/chart.umd.min.js" in scripts
    assert all(src.startswith("/static/") for src in scripts)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from elsewhere
    data = response.context["chart_data"]
    month, last = f"{this_month():%Y-%m}", f"{(this_month() - dt.timedelta(days=1)):%Y-%m}"
    assert data["months"][-2:] == [last, month]
    series = {bank["label"]: bank for bank in data["banks"]}
    # The latest version of each month: this month's version 2, last month's version 1; no run earlier.
    assert series["SA"]["values"][-2:] == [2.5, 60.0]
    assert series["SA"]["values"][:-2] == [None] * 10
    assert series["SA"]["colour"] == "#112233"
    assert '<table id="revenue-share-table">' in page
    assert "60.00 CNY" in page
    assert "60.00 %" in page  # the share of the pool beside the amount


def test_a_bank_operator_charts_only_their_own_bank(statements: dict[str, Any]) -> None:
    client = _client(bank_operator(statements["b"]))
    response = client.get(reverse("admin:alliance_revenuesharestatement_chart"))
    assert [bank["label"] for bank in response.context["chart_data"]["banks"]] == ["SB"]
    page = response.content.decode()
    other = statements["a"]
    # Not by its two-letter code: a random CSRF token may hold any two letters.
    assert other.name_zh not in page
    assert other.name_en not in page
    assert other.brand_colour not in page


def test_four_eyes_through_the_submit_action_and_the_approval_queue() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = make_revenue_policy(reason="")
    url = reverse("admin:alliance_revenuesharepolicy_changelist")

    def submit(user: Any) -> None:
        _client(user).post(url, {"action": "submit", "_selected_action": [policy.pk]})

    submit(maker)  # refused: a submission needs the draft's reason for the change
    assert not ApprovalRequest.objects.exists()
    RevenueSharePolicy.objects.filter(pk=policy.pk).update(reason="yearly review")
    submit(maker)
    request = ApprovalRequest.objects.get()
    assert (request.kind, request.maker_id, request.reason) == (
        "alliance.revenue_share_terms",
        maker.pk,
        "yearly review",
    )
    page = reverse("admin:core_approvalrequest_change", args=[request.pk])
    # The maker's own page offers only to cancel; a forged approval changes nothing.
    assert _client(maker).get(page).context["may_decide"] is False
    _client(maker).post(page, {"decision": "approve"})
    policy.refresh_from_db()
    request.refresh_from_db()
    assert (policy.status, request.status) == ("draft", "pending")
    # Waiting: shown read-only.
    change = reverse("admin:alliance_revenuesharepolicy_change", args=[policy.pk])
    assert not _client(maker).get(change).context["has_change_permission"]
    waiting = _client(checker).get(reverse("admin:core_approvalrequest_changelist"), {"queue": "waiting"})
    assert [row.pk for row in waiting.context["cl"].result_list] == [request.pk]
    assert _client(checker).post(page, {"decision": "approve"}).status_code == 302
    policy.refresh_from_db()
    request.refresh_from_db()
    assert (policy.status, request.status, request.checker_id) == ("approved", "approved", checker.pk)
    # Approved: shown read-only.
    page = _client(maker).get(reverse("admin:alliance_revenuesharepolicy_change", args=[policy.pk]))
    assert not page.context["has_change_permission"]


def test_adding_a_policy_in_the_admin_makes_a_numbered_draft() -> None:
    client = _client(AllianceOperatorFactory())
    form = {f"weight_{m}": "0" for m in ("benefits", "merchants_sponsored", "sponsored_volume", "points_exchanged_in")}
    form |= {f"cost_{key}": value for key, value in form.items()}
    form |= {
        "effective_from": "2026-11-01",
        "weight_active_cardholders": "0.25",
        "weight_issuer_volume": "0.75",
        "cost_weight_active_cardholders": "1",
        "cost_weight_issuer_volume": "0",
        "reason": "first terms",
    }
    response = client.post(reverse("admin:alliance_revenuesharepolicy_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = RevenueSharePolicy.objects.get()
    assert (policy.version, policy.status, policy.weight_issuer_volume) == (1, "draft", Decimal("0.75"))
    bad = client.post(reverse("admin:alliance_revenuesharepolicy_add"), form | {"weight_issuer_volume": "0.7"})
    assert bad.status_code == 200
    assert shown("The weights must add up to exactly 1.") in bad.content.decode()


def test_the_run_form_runs_a_month() -> None:
    make_revenue_policy(status="approved", effective_from=dt.date(2020, 1, 1))
    client = _client(AllianceOperatorFactory())
    response = client.post(reverse("admin:alliance_revenuesharerun_run"), {"month": f"{this_month():%Y-%m}"})
    run = RevenueShareRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:alliance_revenuesharerun_change", args=[run.pk])
    refused = client.post(reverse("admin:alliance_revenuesharerun_run"), {"month": "2026-13"}, follow=True)
    assert shown("A month is written YYYY-MM, e.g. 2026-10.") in refused.content.decode()
