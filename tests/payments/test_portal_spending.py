"""Spending at a glance (/portal/pay/spending/) and the home page's tiles: the sums by category, bank and month
against hand-computed payments, the page without scripts, the local chart library, and pinned query counts."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from core.calendar import SHANGHAI
from core.portal_tiles import Tile, TileRegistry
from members.models import Cardholder
from payments import spending
from payments.models import PaymentIntent
from tests.factories import (
    PASSWORD,
    CardFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_cardholder,
)

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=SHANGHAI)  # the months shown: April 2025 to March 2026


def _pay(card: Any, category: str, amount: int, captured_at: dt.datetime, **fields: Any) -> PaymentIntent:
    """A captured payment on `card` at a merchant of `category`, as the payment services leave it."""
    values: dict[str, Any] = {
        "merchant": MerchantFactory(spend_category=category),
        "cardholder": card.cardholder,
        "card": card,
        "issuer": card.bank,
        "spend_category": category,
        "amount": amount,
        "amount_captured": amount,
        "status": PaymentIntent.Status.SUCCEEDED,
        "captured_at": captured_at,
        "business_date": captured_at.astimezone(SHANGHAI).date(),
        "created_at": captured_at,  # made when captured: a business date is held to the capture window
    }
    values.update(fields)
    refunded = values.pop("refunded", 0)
    return PaymentIntent.objects.create(**values, amount_refunded=refunded, amount_refund_reserved=refunded)


@pytest.fixture
def world() -> dict[str, Any]:
    """One cardholder with a card at bank X (华东) and one at bank Y (西南), and the payments the expectations below
    are computed from by hand."""
    holder = make_cardholder()
    x = MemberBankFactory(code="XBANK", name_zh="华东银行", name_en="East Bank", brand_colour="#112233")
    y = MemberBankFactory(code="YBANK", name_zh="西南银行", name_en="Southwest Bank", brand_colour="#445566")
    card_x = CardFactory(cardholder=holder, product=CardProductFactory(bank=x))
    card_y = CardFactory(cardholder=holder, product=CardProductFactory(bank=y))
    # 00:30 on 1 March in Shanghai is still 28 February in UTC: March's.
    _pay(card_x, "dining", 10_000, dt.datetime(2026, 2, 28, 16, 30, tzinfo=UTC))
    # 23:30 on 28 February in Shanghai: February's.
    _pay(card_x, "dining", 5_000, dt.datetime(2026, 2, 28, 15, 30, tzinfo=UTC))
    _pay(card_y, "travel", 80_000, dt.datetime(2026, 1, 10, 20, 0, tzinfo=SHANGHAI), refunded=30_000)  # partial
    _pay(card_y, "groceries", 2_550, dt.datetime(2026, 3, 5, 9, 0, tzinfo=SHANGHAI), refunded=2_550)  # in full
    # The first month's first minutes in Shanghai count; the minute before them does not.
    _pay(card_x, "groceries", 1_234, dt.datetime(2025, 3, 31, 16, 30, tzinfo=UTC))
    _pay(card_x, "dining", 9_999, dt.datetime(2025, 3, 31, 23, 59, tzinfo=SHANGHAI))
    # None of these is spending: a void after capture, a test-mode payment, an authorisation not captured.
    march = dt.datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
    _pay(card_x, "dining", 7_700, march, status=PaymentIntent.Status.CANCELED)
    _pay(card_x, "dining", 3_300, march, livemode=False)
    _pay(card_x, "dining", 4_400, march, amount_captured=0, status=PaymentIntent.Status.REQUIRES_CAPTURE)
    # Another cardholder's payment at the same bank.
    _pay(CardFactory(product=CardProductFactory(bank=x)), "dining", 99_999, march)
    # A payment in another currency is its own block, never added to CNY.
    _pay(card_y, "dining", 12_345, dt.datetime(2026, 2, 3, 12, 0, tzinfo=SHANGHAI), currency="HKD")
    return {"holder": holder, "x": x, "y": y, "card_x": card_x, "card_y": card_y}


def _month(year: int, month: int) -> int:
    """The index of a month among those shown at NOW."""
    return (year - 2025) * 12 + month - 4


def _at(**values: int) -> list[int]:
    """Twelve months of zeros but the given ones: `_at(m2026_03=10_000)`."""
    row = [0] * 12
    for key, value in values.items():
        year, month = key[1:].split("_")
        row[_month(int(year), int(month))] = value
    return row


def test_sums_by_category_bank_and_month_net_of_refunds_in_shanghai_months(world: dict[str, Any]) -> None:
    with translation.override("en"):
        glance = spending.spending_at_a_glance(world["holder"], now=NOW)
    assert glance.months[0] == dt.date(2025, 4, 1)
    assert glance.months[-1] == dt.date(2026, 3, 1)
    assert len(glance.months) == 12
    assert [block.currency for block in glance.currencies] == ["CNY", "HKD"]
    cny, hkd = glance.currencies
    # Categories in SpendCategory's order; groceries' March payment, refunded in full, adds nothing.
    assert [(s.key, s.label, s.monthly) for s in cny.by_category] == [
        ("dining", "dining", _at(m2026_02=5_000, m2026_03=10_000)),
        ("travel", "travel", _at(m2026_01=50_000)),
        ("groceries", "groceries", _at(m2025_04=1_234)),
    ]
    # Banks by their 12 months' total, named in the page's language.
    assert [(s.key, s.label, s.colour, s.total) for s in cny.by_bank] == [
        ("YBANK", "Southwest Bank", "#445566", 50_000),
        ("XBANK", "East Bank", "#112233", 16_234),
    ]
    assert cny.by_bank[1].monthly == _at(m2025_04=1_234, m2026_02=5_000, m2026_03=10_000)
    assert cny.monthly == _at(m2025_04=1_234, m2026_01=50_000, m2026_02=5_000, m2026_03=10_000)
    assert (cny.total, cny.this_month) == (66_234, 10_000)
    assert [(s.key, s.monthly) for s in hkd.by_category] == [("dining", _at(m2026_02=12_345))]
    assert [(s.key, s.total) for s in hkd.by_bank] == [("YBANK", 12_345)]
    with translation.override("zh-hans"):
        names = [s.label for s in spending.spending_at_a_glance(world["holder"], now=NOW).currencies[0].by_bank]
    assert names == ["西南银行", "华东银行"]


def test_this_month_is_the_shanghai_calendar_month(world: dict[str, Any]) -> None:
    assert spending.spent_this_month(world["holder"], now=NOW) == {"CNY": 10_000}
    # At 23:59 on 28 February (Shanghai) the payment of 00:30 on 1 March has not happened: February's 5,000 is all.
    before = dt.datetime(2026, 2, 28, 23, 59, tzinfo=SHANGHAI)
    assert spending.spent_this_month(world["holder"], now=before) == {"CNY": 5_000, "HKD": 12_345}


def test_two_queries_whatever_the_cards_and_payments(world: dict[str, Any], django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):  # the GROUP BY and the banks it names
        spending.spending_at_a_glance(world["holder"], now=NOW)
    for n in range(8):
        bank = MemberBankFactory()
        card = CardFactory(cardholder=world["holder"], product=CardProductFactory(bank=bank))
        for month in range(1, 13):
            _pay(card, "fuel", 100 + n, dt.datetime(2025 + (month < 4), month, 2, 12, tzinfo=SHANGHAI))
    with django_assert_num_queries(2):
        glance = spending.spending_at_a_glance(world["holder"], now=NOW)
    assert len(glance.currencies[0].by_bank) == 10


# --- the page -------------------------------------------------------------------------------------------------------


@pytest.fixture
def at_noon_15_march(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spending module's clock (only its own) reads NOW."""
    monkeypatch.setattr(spending, "timezone", SimpleNamespace(now=lambda: NOW))


def _client(holder: Cardholder) -> Client:
    client = Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    return client


def _table(html: str, table_id: str) -> list[list[str]]:
    """The rows of one table as the text of their cells (no script needed to read it)."""
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert body is not None, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in rows
    ]


def test_the_page_has_a_table_beside_each_chart_with_the_same_numbers(
    world: dict[str, Any], at_noon_15_march: None
) -> None:
    url = reverse("payments:spending")
    assert url == "/portal/pay/spending/"
    with translation.override("en"):
        response = _client(world["holder"]).get(url, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    html = response.content.decode()
    by_category = _table(html, "spending-category-cny-table")
    assert by_category[0] == ["Month", "dining", "travel", "groceries", "Total"]
    assert by_category[1] == ["April 2025", "0.00", "0.00", "12.34", "12.34"]
    assert by_category[10] == ["January 2026", "0.00", "500.00", "0.00", "500.00"]
    assert by_category[11] == ["February 2026", "50.00", "0.00", "0.00", "50.00"]
    assert by_category[12] == ["March 2026", "100.00", "0.00", "0.00", "100.00"]
    assert by_category[13] == ["12 months", "150.00", "500.00", "12.34", "662.34"]
    by_bank = _table(html, "spending-bank-cny-table")
    assert by_bank[0] == ["Month", "Southwest Bank", "East Bank", "Total"]
    assert by_bank[13] == ["12 months", "500.00", "162.34", "662.34"]
    assert _table(html, "spending-bank-hkd-table")[13] == ["12 months", "123.45", "123.45"]
    # Each chart names its table; the charts are hidden until the script has drawn them.
    assert 'aria-describedby="spending-category-cny-table"' in html
    assert html.count('<figure class="spending-chart" hidden>') == 4
    # The script's data: the same minor units.
    data = json.loads(re.search(r'<script id="spending-data" type="application/json">(.*?)</script>', html, re.S)[1])  # type: ignore[index]
    first = data["charts"][0]
    assert (first["canvas"], first["unit"], first["exponent"]) == ("spending-category-cny", "CNY", 2)
    assert [(s["label"], sum(s["values"])) for s in first["series"]] == [
        ("dining", 15_000),
        ("travel", 50_000),
        ("groceries", 1_234),
    ]
    # Every script is served from here: Chart.js from the vendored copy.
    sources = re.findall(r'<script[^>]* src="([^"]+)"', html)
    assert "/static/core/vendor/chartjs/chart.umd.min.js" in sources
    assert len(sources) >= 2
    assert not [src for src in sources if re.match(r"(https?:)?//", src)]
    # The totals above the charts.
    assert "662.34 CNY" in html
    assert "100.00 CNY" in html


def test_jpy_amounts_have_no_decimals(world: dict[str, Any], at_noon_15_march: None) -> None:
    _pay(world["card_x"], "overseas", 123_456, dt.datetime(2026, 3, 2, 12, tzinfo=SHANGHAI), currency="JPY")
    html = _client(world["holder"]).get(reverse("payments:spending")).content.decode()
    assert _table(html, "spending-category-jpy-table")[13][-1] == "123,456"


def test_a_cardholder_with_no_payments_gets_a_friendly_page_and_no_charts() -> None:
    holder = make_cardholder()
    with translation.override("en"):
        response = _client(holder).get(reverse("payments:spending"), HTTP_ACCEPT_LANGUAGE="en")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing spent in the last 12 months yet." in html
    assert reverse("payments:pay_code") in html
    assert "<canvas" not in html
    assert "chart.umd.min.js" not in html


def test_someone_elses_spending_is_never_shown(world: dict[str, Any], at_noon_15_march: None) -> None:
    other = PaymentIntent.objects.get(amount=99_999).cardholder
    other_client = Client()
    other_client.force_login(other.user)
    html = other_client.get(reverse("payments:spending")).content.decode()
    assert "999.99" in html
    assert "662.34" not in html
    assert "西南银行" not in html


def test_the_page_needs_a_signed_in_cardholder() -> None:
    response = Client().get(reverse("payments:spending"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def _big_cardholder() -> Cardholder:
    """Ten cards at ten banks, points in two programmes, and payments in every month on every card."""
    from rewards import services as ledger

    holder = make_cardholder()
    for n in range(10):
        bank = MemberBankFactory()
        card = CardFactory(cardholder=holder, product=CardProductFactory(bank=bank))
        if n < 2:
            program = PointsProgramFactory(bank=bank)
            ledger.points_earn(cardholder_id=holder.pk, program=program, amount=500, idempotency_key=f"big:{n}")
        for month in range(1, 13):
            _pay(card, ("dining", "travel", "fuel")[month % 3], 1_000 + n, NOW - dt.timedelta(days=30 * month - 20))
    return holder


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("name", ["payments:spending", "members:dashboard"])
def test_query_count_does_not_grow_with_cards_and_payments(name: str, at_noon_15_march: None) -> None:
    small = make_cardholder()
    card = CardFactory(cardholder=small)
    _pay(card, "dining", 1_000, NOW - dt.timedelta(days=3))
    url = reverse(name)
    one_card = _queries(_client(small), url)
    assert _queries(_client(_big_cardholder()), url) == one_card


# --- the home page's tiles -----------------------------------------------------------------------------------------


def test_the_home_page_shows_points_this_months_spending_and_benefits(
    world: dict[str, Any], at_noon_15_march: None
) -> None:
    from rewards import services as ledger

    program = PointsProgramFactory(bank=world["x"], point_value_cny="0.010000")
    ledger.points_earn(cardholder_id=world["holder"].pk, program=program, amount=1_250, idempotency_key="tile")
    with translation.override("en"):
        html = _client(world["holder"]).get(reverse("members:dashboard"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    tiles = re.findall(r'<li><a href="([^"]+)"><strong>([^<]+)</strong><b class="tile-value">([^<]+)</b>', html)
    assert tiles == [
        (reverse("rewards_portal:points"), "Points", "12.50 CNY"),
        (reverse("payments:spending"), "This month&#x27;s spending", "100.00 CNY"),
        (reverse("rewards_portal:benefits"), "Benefits", "Lounges, vouchers and more"),
    ]
    assert "<span>Across 1 programme</span>" in html
    assert f'<a href="{reverse("payments:spending")}">Spending</a>' in html  # the menu's line


def test_tiles_come_in_their_order_and_a_provider_may_show_nothing() -> None:
    registry = TileRegistry()
    registry.register("b.second", lambda holder: Tile("B", str(holder), "/b/"), order=20)
    registry.register("a.hidden", lambda holder: None, order=5)
    registry.register("c.first", lambda holder: Tile("C", "", "/c/"), order=10)
    registry.register("a.also_first", lambda holder: Tile("A", "", "/a/"), order=10)
    registry.register("b.second", lambda holder: Tile("B2", str(holder), "/b/"), order=20)  # ready() twice
    assert [(tile.title, tile.value) for tile in registry.tiles_for(7)] == [("A", ""), ("C", ""), ("B2", "7")]
