"""The cardholder portal's points pages: every programme at once, points expiring, one programme's statement."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from core.partitions import partitions_maintain
from rewards import selectors
from rewards import services as s
from rewards.models import Entry, Lot
from rewards.sealing import seal_pending
from tests.factories import PASSWORD, PointsProgramFactory, make_cardholder
from tests.partitioning import at
from tests.rewards.portal import signed_in

pytestmark = pytest.mark.django_db


def test_the_points_page_shows_every_programme_with_its_value_and_what_expires() -> None:
    holder = make_cardholder()
    a = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    b = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    s.points_earn(cardholder_id=holder.pk, program=a, amount=1_000, idempotency_key="a")
    s.points_earn(cardholder_id=holder.pk, program=b, amount=300, idempotency_key="b")
    soon = s.today() + dt.timedelta(days=10)
    Lot.objects.filter(earned_by__idempotency_key="b").update(expires_on=soon)
    s.points_earn(cardholder_id=holder.pk, program=b, amount=50, idempotency_key="b2")
    later = s.today() + dt.timedelta(days=60)
    Lot.objects.filter(earned_by__idempotency_key__in=["a", "b2"]).update(expires_on=later)
    response = signed_in(holder, language="en").get(reverse("rewards_portal:points"))
    assert response.status_code == 200
    rows = {row.unit: (row.available, row.value_cny) for row in response.context["balances"]}
    assert rows == {a.unit_code: (1_000, Decimal("5.00")), b.unit_code: (350, Decimal("3.50"))}
    # Per programme: what expires within 30 days (0 for a, whose points all expire later) and within 90.
    expiring = [(e.unit, within_30, e.points, e.first_date) for e, within_30 in response.context["expiring"]]
    assert sorted(expiring) == sorted([(a.unit_code, 0, 1_000, later), (b.unit_code, 300, 350, soon)])
    page = response.content.decode()
    assert f"<td>{a.unit_code}</td>\n        <td>0</td>" in page
    assert "¥5.00" in page
    assert "¥3.50" in page
    assert reverse("rewards_portal:statement", args=[a.pk]) in page


def test_points_past_their_date_are_shown_as_about_to_expire_not_available() -> None:
    holder = make_cardholder()
    program = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    s.points_earn(cardholder_id=holder.pk, program=program, amount=200, idempotency_key="old")
    Lot.objects.update(expires_on=s.today() - dt.timedelta(days=1))
    response = signed_in(holder, language="en").get(reverse("rewards_portal:points"))
    [row] = response.context["balances"]
    assert (row.posted, row.available, row.value_cny) == (200, 0, Decimal("0.00"))
    assert "200 points past their date, about to expire" in response.content.decode()


def test_the_statement_pages_newest_first_and_is_the_cardholders_own() -> None:
    holder, other = make_cardholder(), make_cardholder()
    program = PointsProgramFactory()
    for n in range(25):
        s.points_earn(cardholder_id=holder.pk, program=program, amount=10 + n, idempotency_key=f"e{n}")
    s.points_redeem(cardholder_id=holder.pk, program=program, amount=40, idempotency_key="r")
    client = signed_in(holder, language="en")
    url = reverse("rewards_portal:statement", args=[program.pk])
    first = client.get(url)
    lines = first.context["page"].lines
    assert len(lines) == 20
    assert (lines[0].amount, lines[0].kind_label) == (-40, "spend")
    assert "<td>spend</td>" in first.content.decode()
    assert [line.amount for line in lines[1:3]] == [34, 33]
    rest = client.get(url, {"after": first.context["page"].next_after})
    older = [line.amount for line in rest.context["page"].lines]
    assert older == [15, 14, 13, 12, 11, 10]
    assert rest.context["page"].next_after is None
    assert client.get(url, {"after": "²"}).status_code == 200  # a cursor that is not a number: the first page
    # Another cardholder's account, or a programme with no points, is not found.
    assert signed_in(other, language="en").get(url).status_code == 404
    assert client.get(reverse("rewards_portal:statement", args=[PointsProgramFactory().pk])).status_code == 404


def test_the_points_pages_need_a_cardholder() -> None:
    response = Client().get(reverse("rewards_portal:points"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_points_page_is_in_chinese_by_default_and_linked_from_every_portal_page() -> None:
    holder = make_cardholder()
    client = Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    page = client.get(reverse("rewards_portal:points")).content.decode()
    assert "我的积分" in page
    assert "暂无积分" in page
    dashboard = client.get(reverse("members:dashboard")).content.decode()
    assert f'href="{reverse("rewards_portal:points")}"' in dashboard


def _shown(page: Any) -> list[tuple[int, str, int, int]]:
    return [(line.entry_id, line.kind, line.amount, line.balance_after) for line in page.context["page"].lines]


def test_the_statement_shows_the_movements_of_an_archived_month() -> None:
    """The job archives the month of the cardholder's oldest movements (docs/scaling.md, "Partitioning by month"): the
    statement still shows them, with their running balance, paging across the archive's edge, and a payment's page
    still finds the points it earned."""
    holder, program = make_cardholder(), PointsProgramFactory()
    with mock.patch("django.utils.timezone.now", return_value=at(2031, 1)):
        # The first one a payment's earn, as its page finds it: by the payment's key.
        paid = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="payment:pay_a:earn")
        for n in (1, 2):
            s.points_earn(cardholder_id=holder.pk, program=program, amount=100 + n, idempotency_key=f"old-{n}")
    with mock.patch("django.utils.timezone.now", return_value=at(2032, 5)):
        s.points_earn(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="recent")
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="recent-spend")
    client = signed_in(holder, language="en")
    url = reverse("rewards_portal:statement", args=[program.pk])
    before = _shown(client.get(url))
    assert seal_pending() >= 1  # the job archives a month of the ledger once it is sealed
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    result = partitions_maintain(today=dt.date(2032, 6, 10), ahead=0, archive_after=3)

    assert "rewards_entry_archive_203101" in result.archived
    wallet = selectors.cardholder_wallet(cardholder_id=holder.pk, program_id=program.pk)
    assert wallet is not None
    assert Entry.objects.filter(account=wallet).count() == 2  # the three earns' entries are in the archive now
    page = client.get(url)
    assert _shown(page) == before
    assert [amount for _, _, amount, _ in before] == [-30, 50, 102, 101, 100]
    assert [balance for _, _, _, balance in before] == [323, 353, 303, 201, 100]
    assert "102" in page.content.decode()
    moved = selectors.payment_movements(cardholder_id=holder.pk, payment_ref="pay_a", transaction_ids=[])
    assert [(m.transaction_id, m.kind, m.amount) for m in moved] == [(paid.pk, "earn", 100)]
    # Two at a time, newest first, then oldest first as the admin reads it: the same movements, page after page.
    newest, after = [], None
    while True:
        part = selectors.account_statement(account_id=wallet.pk, after_id=after, limit=2, newest_first=True)
        newest += [line.entry_id for line in part.lines]
        if part.next_after is None:
            break
        after = part.next_after
    assert newest == [entry_id for entry_id, _, _, _ in before]
    oldest = selectors.account_statement(account_id=wallet.pk, limit=3)
    assert [line.amount for line in oldest.lines] == [100, 101, 102]
    rest = selectors.account_statement(account_id=wallet.pk, after_id=oldest.next_after, limit=3)
    assert [line.amount for line in rest.lines] == [50, -30]
    assert rest.next_after is None
