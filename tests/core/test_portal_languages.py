"""The portal in both languages: English pages name banks, programmes and products in English and show no Chinese
interface text; Chinese pages use the Chinese names; every page's first heading is the one `tests.portal_pages`
expects; times are Asia/Shanghai's; programmes and products take their English name from the services and the
admin."""

from __future__ import annotations

import re
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from members import services
from members.models import CardProduct, PointsProgram
from tests.factories import PASSWORD, MemberBankFactory
from tests.portal_pages import CONSENT_AT_SHOWN, PAGES, PortalHolder, portal_holder

pytestmark = pytest.mark.django_db

CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


class _VisibleText(HTMLParser):
    """The text a reader sees, without scripts, styles, the brand (盟卡 Mengka, one mark in both languages) and the
    language menu (each language is named in itself); and each page's first h1."""

    SKIP = {"script", "style", "select", "title"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.h1: list[str] | None = None
        self.h1_done = False
        self._skip: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag in self.SKIP or (tag == "a" and "brand" in classes):
            self._skip.append(tag)
        if tag == "h1" and not self.h1_done:
            self.h1 = []

    def handle_endtag(self, tag: str) -> None:
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()
        if tag == "h1" and self.h1 is not None and not self.h1_done:
            self.h1_done = True

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.parts.append(data)
        if self.h1 is not None and not self.h1_done:
            self.h1.append(data)

    @property
    def heading(self) -> str:
        return " ".join("".join(self.h1 or []).split())


def _read(html: str) -> _VisibleText:
    parser = _VisibleText()
    parser.feed(html)
    return parser


def _client(portal: PortalHolder, language: str) -> Client:
    client = Client(headers={"accept-language": language})
    assert client.login(username=portal.username, password=PASSWORD)
    return client


@pytest.fixture
def portal() -> PortalHolder:
    return portal_holder()


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_an_english_page_shows_no_chinese_and_its_heading(portal: PortalHolder, page: Any) -> None:
    response = _client(portal, "en").get(page.url(portal))
    assert response.status_code == 200
    text = _read(response.content.decode())
    with translation.override("en"):
        assert text.heading == page.heading(portal)
    chinese = [part.strip() for part in text.parts if CJK.search(part)]
    assert chinese == []


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_a_chinese_page_shows_its_heading(portal: PortalHolder, page: Any) -> None:
    response = _client(portal, "zh-hans").get(page.url(portal))
    assert response.status_code == 200
    with translation.override("zh-hans"):
        assert _read(response.content.decode()).heading == page.heading(portal)


def test_names_follow_the_language_of_the_page(portal: PortalHolder) -> None:
    pages = [
        reverse("members:dashboard"),
        reverse("rewards_portal:points"),
        reverse("rewards_portal:benefit", args=[portal.benefit.pk]),
    ]
    english = "".join(_client(portal, "en").get(url).content.decode() for url in pages)
    chinese = "".join(_client(portal, "zh-hans").get(url).content.decode() for url in pages)
    for en, zh in [
        ("Huaxin Test Bank", "华信测试银行"),
        ("Huaxin Gold Card", "华信金卡"),
        ("Jianghai Platinum Card", "江海白金卡"),
        ("Huaxin Points", "华信积分"),
        ("Jianghai Points", "江海积分"),
    ]:
        assert en in english
        assert zh not in english
        assert zh in chinese
        assert en not in chinese


def test_a_programme_or_product_without_an_english_name_keeps_its_chinese_one() -> None:
    program = PointsProgram(name="青山积分", name_en="")
    product = CardProduct(name="青山信用卡", name_en="Qingshan Credit Card")
    with translation.override("en"):
        assert (program.local_name, product.local_name) == ("青山积分", "Qingshan Credit Card")
    with translation.override("zh-hans"):
        assert (program.local_name, product.local_name) == ("青山积分", "青山信用卡")


def test_times_are_shown_in_asia_shanghai(portal: PortalHolder) -> None:
    page = _client(portal, "en").get(reverse("members:consents")).content.decode()
    assert f"<td>{CONSENT_AT_SHOWN}</td>" in page  # given at 16:30 UTC the day before


def test_the_services_and_the_admin_take_the_english_names(alliance_user: Any) -> None:
    bank = MemberBankFactory()
    program = services.program_create(
        bank=bank, unit_code="QS-PTS", name="青山积分", name_en="Qingshan Points", point_value_cny=Decimal("0.002")
    )
    product = services.product_create(
        bank=bank, code="QS-CREDIT", name="青山信用卡", name_en="Qingshan Credit Card", kind="credit"
    )
    program.refresh_from_db()
    product.refresh_from_db()
    assert (program.name_en, product.name_en) == ("Qingshan Points", "Qingshan Credit Card")
    client = Client()
    client.force_login(alliance_user)
    for url in (
        reverse("admin:members_pointsprogram_change", args=[program.pk]),
        reverse("admin:members_cardproduct_change", args=[product.pk]),
    ):
        page = client.get(url).content.decode()
        assert 'name="name_en"' in page
        assert "Qingshan" in page
    listing = client.get(reverse("admin:members_cardproduct_changelist"), {"q": "Qingshan Credit"})
    assert list(listing.context["cl"].queryset) == [product]
