from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from members.models import BindingStatus, Card, ConsentPurpose
from tests.factories import PASSWORD, BinRangeFactory, card_number_for, make_card, make_cardholder, make_consent_text

pytestmark = pytest.mark.django_db


def _client(holder: Any) -> Client:
    client = Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    return client


def test_anonymous_is_sent_to_sign_in() -> None:
    for name, args in (("members:dashboard", []), ("members:card_detail", [1]), ("members:consents", [])):
        response = Client().get(reverse(name, args=args))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_dashboard_lists_my_cards_across_banks_and_not_others() -> None:
    holder = make_cardholder()
    mine = [make_card(holder), make_card(holder, status="frozen")]
    theirs = make_card()
    response = _client(holder).get(reverse("members:dashboard"))
    html = response.content.decode()
    assert response.status_code == 200
    for card in mine:
        assert f"•••• {card.last4}" in html
        assert card.bank.brand_colour in html
        assert reverse("members:card_detail", args=[card.pk]) in html
    assert reverse("members:card_detail", args=[theirs.pk]) not in html
    assert "已冻结" in html or "frozen" in html


def test_another_cardholders_card_answers_404() -> None:
    holder = make_cardholder()
    theirs = make_card()
    client = _client(holder)
    assert client.get(reverse("members:card_detail", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("members:card_freeze", args=[theirs.pk])).status_code == 404
    assert Card.objects.get(pk=theirs.pk).status == BindingStatus.ACTIVE


def test_staff_without_a_cardholder_profile_gets_404(alliance_user: Any) -> None:
    client = Client()
    client.force_login(alliance_user)
    assert client.get(reverse("members:dashboard")).status_code == 404


def test_freeze_and_unfreeze_from_the_card_page_need_post() -> None:
    card = make_card()
    client = _client(card.cardholder)
    url = reverse("members:card_freeze", args=[card.pk])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 302
    assert Card.objects.get(pk=card.pk).status == BindingStatus.FROZEN
    assert client.post(reverse("members:card_unfreeze", args=[card.pk])).status_code == 302
    assert Card.objects.get(pk=card.pk).status == BindingStatus.ACTIVE


def test_csrf_is_enforced_on_state_changes() -> None:
    card = make_card()
    client = Client(enforce_csrf_checks=True)
    client.force_login(card.cardholder.user)
    assert client.post(reverse("members:card_freeze", args=[card.pk])).status_code == 403
    assert Card.objects.get(pk=card.pk).status == BindingStatus.ACTIVE


def test_bind_through_the_portal(settings: Any) -> None:
    from members.issuers import SandboxIssuerVerifier

    holder = make_cardholder()
    bin_range = BinRangeFactory()
    pan = card_number_for(bin_range, 42)
    client = _client(holder)
    response = client.post(reverse("members:card_bind"), {"card_number": pan, "expiry": "12/31"})
    assert response.status_code == 302
    card = Card.objects.get(cardholder=holder)
    challenge = card.challenges.get()
    assert response["Location"] == reverse("members:binding_verify", args=[challenge.pk])
    page = client.get(response["Location"])
    assert holder.masked_phone in page.content.decode()
    code = SandboxIssuerVerifier().code_for(holder.phone_hash, challenge.issuer_reference)
    wrong = client.post(response["Location"], {"code": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 422
    done = client.post(response["Location"], {"code": code})
    assert done.status_code == 302
    assert done["Location"] == reverse("members:dashboard")
    card.refresh_from_db()
    assert card.status == BindingStatus.ACTIVE


def test_bind_errors_are_shown_and_the_number_is_not_echoed() -> None:
    holder = make_cardholder()
    BinRangeFactory()
    client = _client(holder)
    response = client.post(reverse("members:card_bind"), {"card_number": "4111111111111112", "expiry": "12/31"})
    html = response.content.decode()
    assert response.status_code == 422
    assert "4111111111111112" not in html
    assert Card.objects.count() == 0
    bad_expiry = client.post(reverse("members:card_bind"), {"card_number": "4111111111111111", "expiry": "13"})
    assert bad_expiry.status_code == 422


def test_link_an_account_through_the_portal() -> None:
    from members.models import LinkedAccount
    from tests.factories import MemberBankFactory

    holder = make_cardholder()
    bank = MemberBankFactory(prepaid_licence=True)
    client = _client(holder)
    response = client.post(
        reverse("members:account_link"), {"bank": bank.pk, "kind": "wallet", "account_number": "W0000123456"}
    )
    assert response.status_code == 302
    account = LinkedAccount.objects.get(cardholder=holder)
    assert (account.status, account.masked_number) == (BindingStatus.PENDING, "•••• 3456")


def test_consents_page_grant_withdraw_and_history() -> None:
    from members.selectors import consent_granted

    holder = make_cardholder()
    make_consent_text(ConsentPurpose.MARKETING)
    client = _client(holder)
    url = reverse("members:consents")
    assert client.post(url, {"purpose": "marketing", "action": "grant"}).status_code == 302
    assert consent_granted(holder, ConsentPurpose.MARKETING) is True
    assert client.post(url, {"purpose": "marketing", "action": "withdraw"}).status_code == 302
    assert consent_granted(holder, ConsentPurpose.MARKETING) is False
    page = client.get(url)
    assert page.status_code == 200
    assert len(page.context["history"]) == 2


def test_dev_otp_page_exists_only_in_debug(settings: Any) -> None:
    card = make_card()
    client = _client(card.cardholder)
    settings.DEBUG = False
    assert client.get(reverse("members:dev_otp")).status_code == 404
    settings.DEBUG = True
    response = client.get(reverse("members:dev_otp"))
    assert response.status_code == 200


def test_login_locks_out_after_five_failures_per_username_and_address() -> None:
    holder = make_cardholder()
    url = reverse("login")
    client = Client()
    for _ in range(5):
        assert client.post(url, {"username": holder.user.username, "password": "nope"}).status_code == 200
    locked = client.post(url, {"username": holder.user.username, "password": PASSWORD})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another username from the same address is not locked.
    other = make_cardholder()
    ok = client.post(url, {"username": other.user.username, "password": PASSWORD})
    assert ok.status_code == 302
    assert ok["Location"] == reverse("members:dashboard")


def test_login_redirects_to_a_safe_next_only() -> None:
    holder = make_cardholder()
    response = Client().post(
        reverse("login"), {"username": holder.user.username, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("members:dashboard")


def test_dev_otp_page_is_404_for_anyone_without_debug(settings: Any) -> None:
    settings.DEBUG = False
    assert Client().get(reverse("members:dev_otp")).status_code == 404


def test_dev_otp_page_shows_my_sandbox_codes_only(settings: Any) -> None:
    from members.issuers import SandboxIssuerVerifier

    settings.DEBUG = True
    holder, other = make_cardholder(), make_cardholder()
    bin_range = BinRangeFactory()
    client = _client(holder)
    client.post(reverse("members:card_bind"), {"card_number": card_number_for(bin_range, 1), "expiry": "12/31"})
    _client(other).post(reverse("members:card_bind"), {"card_number": card_number_for(bin_range, 2), "expiry": "12/31"})
    sandbox = SandboxIssuerVerifier()
    mine = sandbox.sent_codes(holder.phone_hash)[0]
    theirs = sandbox.sent_codes(other.phone_hash)[0]
    html = client.get(reverse("members:dev_otp")).content.decode()
    assert mine["reference"] in html
    assert mine["code"] in html
    assert theirs["reference"] not in html


def test_sandbox_announces_codes_on_the_console_only_in_debug(settings: Any, caplog: Any) -> None:
    from members.issuers import SandboxIssuerVerifier

    caplog.set_level("INFO", logger="members.issuers")
    settings.DEBUG = False
    SandboxIssuerVerifier().start(bank_code="B1", subject_fingerprint="f", holder_key="k", phone_hint="0001")
    assert "sandbox OTP" not in caplog.text
    settings.DEBUG = True
    started = SandboxIssuerVerifier().start(bank_code="B1", subject_fingerprint="f", holder_key="k", phone_hint="0001")
    code = SandboxIssuerVerifier().code_for("k", started.reference)
    assert f"sandbox OTP for reference {started.reference}: {code}" in caplog.text
