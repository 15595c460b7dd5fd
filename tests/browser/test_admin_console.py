"""The operators' console in a real browser: a bank operator and an alliance operator sign in, read the dashboard,
export a list and watch a job's progress while its page reloads. Screenshots in var/screenshots/admin/desktop/."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from core.models import AuditLog, JobRun
from tests.browser.support import SCREENSHOTS, horizontal_overflow
from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory, bank_operator

SIZE = "desktop"


def _shot(page: Any, name: str) -> None:
    folder = SCREENSHOTS / "admin" / SIZE
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


# Committed rows for the live server; the operator groups (data migrations) restored after other tests' flushes.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _sign_in(page: Any, live_server: Any, user: Any) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_selector("#console")


@pytest.fixture
def world() -> dict[str, Any]:
    # The live server needs committed rows (a transactional database); the operator groups and their permissions,
    # written by data migrations, are restored before each test by the serialized rollback (the module's mark).
    ours = FACTORIES["payments.paymentintent"]()
    theirs = FACTORIES["payments.paymentintent"]()
    return {"ours": ours, "theirs": theirs, "operator": bank_operator(ours.issuer)}


def test_a_bank_operator_reads_the_dashboard_and_exports_a_list(
    open_page: Any, live_server: Any, world: dict[str, Any]
) -> None:
    page = open_page(SIZE)
    _sign_in(page, live_server, world["operator"])
    tiles = page.locator(".console-tile")
    assert tiles.count() >= 5
    assert page.locator("#console-apps").is_visible()  # the stock app list stays reachable below
    page.wait_for_function("() => document.querySelector('canvas[data-console-chart]').width > 0")
    assert horizontal_overflow(page) == 0
    _shot(page, "dashboard-bank-operator")

    page.locator(".console-tile").first.click()  # today's payments, the list behind the tile
    page.wait_for_selector("#changelist")
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_download() as download:
        page.click("a.export-csv")
    body = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert len(rows) == 2
    assert world["ours"].public_id in rows[1]
    audit = AuditLog.objects.get(action="admin.export")
    assert audit.after["rows"] == 1
    _shot(page, "payments-list-bank-operator")


def test_an_alliance_operator_narrows_the_dashboard_to_one_bank(
    open_page: Any, live_server: Any, world: dict[str, Any]
) -> None:
    page = open_page(SIZE, javascript=False)
    _sign_in(page, live_server, AllianceOperatorFactory())
    everything = page.locator(".console-tile").first.inner_text()
    page.select_option("#console-bank", str(world["theirs"].issuer_id))
    page.click(".console-filter button")
    page.wait_for_url(f"**/admin/?bank={world['theirs'].issuer_id}")
    narrowed = page.locator(".console-tile").first.inner_text()
    assert "2 " in everything.replace("\n", " ")
    assert "1 " in narrowed.replace("\n", " ")
    assert page.locator("#console-table-console-payments").is_visible()  # the numbers without JavaScript
    _shot(page, "dashboard-alliance-one-bank")


def test_an_operator_watches_a_jobs_progress_while_the_page_reloads(
    open_page: Any, live_server: Any, world: dict[str, Any]
) -> None:
    run = JobRun.objects.create(job="rewards.lots_expire", period="2026-12-05", total=1_000, done=250)
    page = open_page(SIZE, javascript=False)  # the reload is the page's own, not a script's
    _sign_in(page, live_server, world["operator"])
    page.goto(f"{live_server.url}/admin/core/jobrun/{run.pk}/change/")
    assert page.locator('progress[value="25"]').count() == 1
    _shot(page, "job-running-25")
    JobRun.objects.filter(pk=run.pk).update(done=750)
    page.wait_for_selector('progress[value="75"]', timeout=12_000)
    box = page.locator(".job-progress").bounding_box()
    assert box is not None
    assert box["width"] >= 150  # the bar and its figures are not cut
    _shot(page, "job-running-75")
