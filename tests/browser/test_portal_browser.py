"""The portal in a real browser, at a desktop's size (1280×800) and a phone's (390×844): a cardholder signs in, opens
every page of `tests.portal_pages.PAGES` (dashboard, card, points, statement, exchange, benefits, a benefit,
vouchers, offers, the payment code, …), each with its heading, nothing wider than the window and, on the phone,
every tap target at least 44 px; the menu folds on the phone; the language form switches the page between Chinese
and English; and the core actions — exchanging points, redeeming a benefit, showing a payment code, binding a
card — work with JavaScript and without it."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from django.utils import translation

from members.issuers import SandboxIssuerVerifier
from members.models import BindingChallenge, Card
from payments.models import PaymentCode
from rewards import selectors as rewards_selectors
from rewards.models import Voucher
from tests.browser.support import heading, horizontal_overflow, screenshot, small_tap_targets
from tests.factories import PASSWORD, BinRangeFactory, CardProductFactory, card_number_for
from tests.portal_pages import HOLDER_NAME, PAGES, PortalHolder, portal_holder

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def portal(transactional_db: Any) -> PortalHolder:
    return portal_holder()


def _says(language: str, message: str, **values: Any) -> str:
    with translation.override(language):
        text = translation.gettext(message)
    return text % values if values else text


def sign_in(page: Any, live_server: Any, portal: PortalHolder) -> None:
    page.goto(live_server.url + reverse("login"))
    page.fill("input[name=username]", portal.username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main button[type=submit]").click()
    page.wait_for_url(live_server.url + reverse("members:dashboard"))


def _posted(portal: PortalHolder, program: Any) -> int:
    wallet = rewards_selectors.cardholder_wallet(cardholder_id=portal.holder.pk, program_id=program.pk)
    return wallet.posted if wallet is not None else 0


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_shows_its_heading_and_fits_the_window(
    size: str, live_server: Any, portal: PortalHolder, open_page: Any
) -> None:
    page = open_page(size)
    page.goto(live_server.url + reverse("login"))
    assert horizontal_overflow(page) <= 0
    screenshot(page, size, "sign-in")
    sign_in(page, live_server, portal)
    with translation.override("zh-hans"):
        expected = {entry.name: entry.heading(portal) for entry in PAGES}
    for entry in PAGES:
        response = page.goto(live_server.url + entry.url(portal))
        assert response is not None
        assert response.status == 200, entry.name
        assert heading(page) == expected[entry.name], entry.name
        assert horizontal_overflow(page) <= 0, f"{entry.name} scrolls sideways at {size}"
        if size == "phone":
            assert small_tap_targets(page) == [], entry.name
        screenshot(page, size, entry.name)


def test_the_menu_folds_on_a_phone_and_is_open_on_a_desktop(
    live_server: Any, portal: PortalHolder, open_page: Any
) -> None:
    phone = open_page("phone")
    sign_in(phone, live_server, portal)
    points_link = phone.locator(".menu nav a", has_text=_says("zh-hans", "My points"))
    assert not points_link.is_visible()
    phone.locator(".menu summary").click()
    assert points_link.is_visible()
    assert horizontal_overflow(phone) <= 0
    assert small_tap_targets(phone) == []
    screenshot(phone, "phone", "menu-open")
    points_link.click()
    phone.wait_for_url(live_server.url + reverse("rewards_portal:points"))
    assert heading(phone) == _says("zh-hans", "My points")
    assert not phone.locator(".menu nav a").first.is_visible()  # a new page starts with the menu folded

    desktop = open_page("desktop")
    sign_in(desktop, live_server, portal)
    assert not desktop.locator(".menu summary").is_visible()
    assert desktop.locator(".menu nav a", has_text=_says("zh-hans", "My points")).is_visible()


@pytest.mark.parametrize(("size", "javascript"), [("phone", True), ("desktop", False)])
def test_the_language_form_switches_the_page(
    size: str, javascript: bool, live_server: Any, portal: PortalHolder, open_page: Any
) -> None:
    page = open_page(size, javascript=javascript)
    sign_in(page, live_server, portal)
    chinese, english = _says("zh-hans", "Hello, %(name)s", name=HOLDER_NAME), f"Hello, {HOLDER_NAME}"
    assert chinese != english
    assert heading(page) == chinese
    for language, expected in (("en", english), ("zh-hans", chinese)):
        form = page.locator("form.lang")
        if javascript:  # choosing sends the form
            with page.expect_navigation():
                form.locator("select").select_option(language)
        else:  # the button <noscript> shows
            form.locator("select").select_option(language)
            form.locator("button").click()
        assert heading(page) == expected
        assert page.locator("html").get_attribute("lang") == language
        screenshot(page, size, f"dashboard-{language}")


@pytest.mark.parametrize(("size", "javascript"), [("phone", True), ("desktop", False)])
def test_the_core_actions_work_with_and_without_javascript(
    size: str, javascript: bool, live_server: Any, portal: PortalHolder, open_page: Any
) -> None:
    page = open_page(size, javascript=javascript)
    sign_in(page, live_server, portal)
    a, b = portal.programs
    suffix = "js" if javascript else "nojs"

    # Exchange 1,000 of A's points for B's.
    page.goto(live_server.url + reverse("rewards_portal:exchange"))
    form = page.locator("#exchange-form")
    form.locator("select[name=from_program]").select_option(str(a.pk))
    form.locator("select[name=to_program]").select_option(str(b.pk))
    form.locator("input[name=amount]").fill("1000")
    if javascript:  # the live preview answers before the exchange is made
        page.locator("#exchange-preview [data-field=points_out]").filter(has_text=b.unit_code).wait_for()
    screenshot(page, size, f"exchange-{suffix}")
    form.locator("button[type=submit]").click()
    page.wait_for_url(live_server.url + reverse("rewards_portal:points"))
    assert _posted(portal, a) == 19_000
    assert _posted(portal, b) > 5_000

    # Redeem the benefit with the card that may.
    page.goto(live_server.url + reverse("rewards_portal:benefit", args=[portal.benefit.pk]))
    page.locator("#redeem-form button[type=submit]").click()
    page.wait_for_url(live_server.url + reverse("rewards_portal:vouchers"))
    assert Voucher.objects.filter(benefit=portal.benefit).count() == 1
    assert portal.benefit.title_zh in page.locator("main").inner_text()
    screenshot(page, size, f"vouchers-{suffix}")

    # Show a payment code.
    page.goto(live_server.url + reverse("payments:pay_code"))
    page.locator("#paycode-form button[type=submit]").click()
    code = PaymentCode.objects.get(cardholder=portal.holder)
    assert page.locator("#paycode .digits").inner_text().replace(" ", "") == code.code
    assert horizontal_overflow(page) <= 0
    screenshot(page, size, f"pay-code-{suffix}")

    # Bind a card: the number, then the code the issuer sent.
    bins = BinRangeFactory(product=CardProductFactory(bank=portal.cards[0].bank))
    page.goto(live_server.url + reverse("members:card_bind"))
    page.fill("input[name=card_number]", card_number_for(bins, 4242))
    page.fill("input[name=expiry]", "12/31")
    page.locator("main form button[type=submit]").click()
    challenge = BindingChallenge.objects.get(card__cardholder=portal.holder)
    page.wait_for_url(live_server.url + reverse("members:binding_verify", args=[challenge.pk]))
    code = SandboxIssuerVerifier().code_for(portal.holder.phone_hash, challenge.issuer_reference)
    page.fill("input[name=code]", code)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(live_server.url + reverse("members:dashboard"))
    bound = Card.objects.get(cardholder=portal.holder, bin=bins.prefix)
    assert bound.status == "active"
    assert page.locator(".cardlist li").count() == 3
