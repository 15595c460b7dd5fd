"""Every page an operator or a cardholder reaches opens on the demo's data: a page that breaks on real rows (a
missing label, an image path, a money column on an odd row) fails here before it fails in front of someone."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.urls import reverse
from psycopg2 import sql

from alliance.demo import DemoContext, seed_all
from core.models import ArchivedMonth
from members.demo import DEMO_PASSWORD
from members.models import Card
from payments.models import PaymentIntent
from rewards.models import Benefit
from tests.alliance.test_demo import demo_on_simulator  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

MODELS = sorted(
    (model for model in apps.get_models() if admin.site.is_registered(model)), key=lambda model: model._meta.label_lower
)


def _signed_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=DEMO_PASSWORD), username
    return client


def _admin_pages(client: Client) -> list[tuple[str, int]]:
    """Each registered model's change list and its first row's change and history pages, with their statuses."""
    seen = []
    for model in MODELS:
        info = (model._meta.app_label, model._meta.model_name)
        listing = client.get(reverse("admin:{}_{}_changelist".format(*info)))
        seen.append((model._meta.label_lower, listing.status_code))
        if listing.status_code != 200:
            continue
        first = listing.context["cl"].result_list[:1]
        for obj in first:
            for page in ("change", "history"):
                response = client.get(reverse(f"admin:{info[0]}_{info[1]}_{page}", args=[obj.pk]))
                seen.append((f"{model._meta.label_lower} {page}", response.status_code))
    return seen


def test_every_admin_page_and_portal_page_opens_on_the_demo(demo_on_simulator: Any) -> None:  # noqa: F811
    ctx = seed_all(DemoContext(scale="small", out=io.StringIO()))

    alliance = _admin_pages(_signed_in("alliance"))
    assert [(page, status) for page, status in alliance if status != 200] == []
    assert len(alliance) > 2 * len(MODELS)  # most tables have demo rows, whose pages were opened too

    # Each archived month's rows, found by the id of its first row: every archive table's columns shown.
    operator = _signed_in("alliance")
    found = []
    for record in ArchivedMonth.objects.order_by("table"):
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT min(id) FROM {}").format(sql.Identifier(record.archive_table)))
            (first,) = cursor.fetchone()
        page = operator.get(reverse("admin:core_archivedmonth_rows", args=[record.pk]), {"q": str(first or 0)})
        assert page.status_code == 200, record.archive_table
        if first is not None:
            assert first in [dict(row)["id"] for row in page.context["rows"]], record.archive_table
            found.append(record.table)
    assert {"rewards_entry", "rewards_ledgertransaction", "payments_paymentintent", "payments_refund"} <= set(found)

    bank_operator = next(user for role, user, _ in ctx.logins if "(admin)" in role and user != "alliance")
    for page, status in _admin_pages(_signed_in(bank_operator)):
        assert status in (200, 403), (bank_operator, page, status)  # 403: an alliance-only table

    holder = _signed_in(ctx.demo_cardholder or "demo")
    card = Card.objects.filter(cardholder__user__username="demo").order_by("pk").first()
    benefit = Benefit.objects.filter(status="published").order_by("pk").first()
    assert card is not None
    assert benefit is not None
    pages = [
        reverse("members:dashboard"),
        reverse("members:card_detail", args=[card.pk]),
        reverse("members:consents"),
        reverse("payments:pay_code"),
        reverse("payments:agreements"),
        reverse("payments:balances"),
        reverse("payments:spending"),
        reverse("rewards_portal:points"),
        reverse("rewards_portal:exchange"),
        reverse("rewards_portal:benefits"),
        reverse("rewards_portal:benefit", args=[benefit.pk]),
        reverse("rewards_portal:vouchers"),
        reverse("rewards_portal:offers"),
        reverse("payments:statement"),
        reverse("payments:statement_csv"),
        reverse("alliance_portal:segments"),
    ]
    paid = PaymentIntent.objects.filter(cardholder__user__username="demo", livemode=True, amount_refunded__gt=0)
    pages += [reverse("payments:statement_payment", args=[p.public_id]) for p in paid.order_by("pk")[:3]]
    pages += [reverse("rewards_portal:statement", args=[row.program_id]) for row in cardholder_balances_of("demo")]
    assert len(pages) > 16  # the demo login has refunded payments and points in several programmes
    for url in pages:
        assert holder.get(url).status_code == 200, url


def cardholder_balances_of(username: str) -> list[Any]:
    from members.models import Cardholder
    from rewards.selectors import cardholder_balances

    return cardholder_balances(cardholder_id=Cardholder.objects.get(user__username=username).pk)
