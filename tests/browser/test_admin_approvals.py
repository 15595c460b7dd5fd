"""The approval queue in a real browser: a bank operator requests a points adjustment, a second operator of the same
bank finds it waiting in their queue and approves it (with JavaScript off: the decision is a plain form), and the
cardholder's balance changes. Screenshots go to var/screenshots/desktop/admin-approval-*.png."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.urls import reverse

from core.models import ApprovalRequest
from core.roles import grant_permissions
from core.scoping import BANK_OPERATORS
from rewards import services as ledger
from tests.browser.support import screenshot
from tests.factories import PASSWORD, CardholderFactory, PointsProgramFactory, bank_operator, card_at

# Committed rows for the live server; the operator groups (data migrations) restored after other tests' flushes.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _sign_in(page: Any, live_server: Any, user: Any) -> None:
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(live_server.url + reverse("admin:index"))


def test_a_second_operator_approves_a_points_adjustment_in_the_queue(live_server: Any, open_page: Any) -> None:
    # A transactional test starts from a flushed database: the operators' group is granted again.
    grant_permissions(
        apps, {BANK_OPERATORS: ["rewards.view_account", "rewards.adjust_points", "core.view_approvalrequest"]}
    )
    program, holder = PointsProgramFactory(), CardholderFactory()
    card_at(holder, program.bank)
    maker, checker = bank_operator(program.bank), bank_operator(program.bank)

    page = open_page("desktop")
    _sign_in(page, live_server, maker)
    page.goto(live_server.url + reverse("admin:rewards_account_changelist"))
    page.click(f"a[href='{reverse('admin:rewards_account_adjust')}']")
    page.fill("input[name=cardholder]", str(holder.pk))
    page.select_option("select[name=program]", str(program.pk))
    page.fill("input[name=amount]", "250")
    page.fill("textarea[name=reason]", "a purchase that earned nothing")
    screenshot(page, "desktop", "admin-approval-request")
    page.click("form.adjustment-request input[type=submit]")
    request = ApprovalRequest.objects.get()
    page.wait_for_url(live_server.url + reverse("admin:core_approvalrequest_change", args=[request.pk]))
    assert page.locator("button[value=approve]").count() == 0  # the maker may only cancel
    assert ledger.wallet_account(holder.pk, program).posted == 0

    queue = open_page("desktop", javascript=False)
    _sign_in(queue, live_server, checker)
    queue.goto(live_server.url + reverse("admin:core_approvalrequest_changelist") + "?queue=waiting")
    screenshot(queue, "desktop", "admin-approval-queue")
    queue.click(f"#result_list a[href*='/{request.pk}/change/']")
    assert "+250" in queue.inner_text(".approval-request table")
    queue.click("button[value=approve]")
    queue.wait_for_selector(".approval-status")
    screenshot(queue, "desktop", "admin-approval-approved")

    request.refresh_from_db()
    assert (request.status, request.maker, request.checker) == ("approved", maker, checker)
    assert ledger.wallet_account(holder.pk, program).posted == 250
