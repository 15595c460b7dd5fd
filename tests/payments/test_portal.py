"""The cardholder portal's payment pages: payment code with a QR, agreements, live balances."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from core.crypto import keyed_hash
from payments.models import Agreement, PaymentCode
from tests.factories import (
    PASSWORD,
    CardFactory,
    ChannelFactory,
    MerchantFactory,
    make_cardholder,
    make_linked_account,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def holder(channel_fake: Any) -> dict[str, Any]:
    cardholder = make_cardholder()
    card = CardFactory(cardholder=cardholder)
    client = Client()
    assert client.login(username=cardholder.user.username, password=PASSWORD)
    return {"cardholder": cardholder, "card": card, "client": client, "fake": channel_fake}


def test_payment_code_page_shows_digits_and_a_server_drawn_qr(holder: dict[str, Any]) -> None:
    client = holder["client"]
    url = reverse("payments:pay_code")
    assert url == "/portal/pay/code/"
    page = client.get(url)
    assert page.status_code == 200
    assert not PaymentCode.objects.exists()  # looking at the page creates nothing
    response = client.post(url, {"source": f"card:{holder['card'].pk}", "use_points": "on"})
    code = PaymentCode.objects.get()
    assert (code.card, code.use_points) == (holder["card"], True)
    html = response.content.decode()
    assert code.code[:4] + " " + code.code[4:8] in html
    assert "<svg" in html
    assert "payments/paycode.js" in html
    assert '<script src="http' not in html  # every script is served from here
    refreshed = client.post(url, {"source": f"card:{holder['card'].pk}"}, headers={"X-Requested-With": "fetch"})
    fragment = refreshed.content.decode()
    assert fragment.lstrip().startswith('<div id="paycode"')
    assert PaymentCode.objects.count() == 2
    newest = PaymentCode.objects.order_by("-id").first()
    assert newest is not None
    assert newest.code[-4:] in fragment


def test_someone_elses_card_cannot_be_chosen(holder: dict[str, Any]) -> None:
    other = CardFactory()
    response = holder["client"].post(reverse("payments:pay_code"), {"source": f"card:{other.pk}"})
    assert response.status_code == 200
    assert "source" in response.context["form"].errors
    assert not PaymentCode.objects.exists()


def test_grant_and_revoke_an_agreement(holder: dict[str, Any]) -> None:
    merchant = MerchantFactory()
    client = holder["client"]
    url = reverse("payments:agreements")
    response = client.post(
        url,
        {
            "source": f"card:{holder['card'].pk}",
            "merchant_code": merchant.code,
            "limit_per_payment": "200.00",
            "limit_per_month": "1000.00",
        },
    )
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    agreement = Agreement.objects.get()
    assert (agreement.merchant, agreement.limit_per_payment, agreement.limit_per_month) == (merchant, 20_000, 100_000)
    token = response.context["granted"].token
    assert agreement.token_hash == keyed_hash(token, purpose="agreement-token")
    assert f'<code class="token">{token}</code>' in response.content.decode()  # shown on the grant's answer...
    page = client.get(url).content.decode()
    assert token not in page  # ...and never again: the list shows its hint
    assert agreement.token_hint in page
    assert "200.00 CNY" in page
    response = client.post(reverse("payments:agreement_revoke", args=[agreement.public_id]))
    assert response.status_code == 302
    agreement.refresh_from_db()
    assert agreement.revoked_at is not None
    bad = client.post(
        url,
        {
            "source": f"card:{holder['card'].pk}",
            "merchant_code": "NOPE",
            "limit_per_payment": "200.00",
            "limit_per_month": "100.00",
        },
    )
    assert bad.status_code == 200
    assert Agreement.objects.count() == 1


def test_a_failing_bank_shows_a_message_while_other_balances_show(holder: dict[str, Any]) -> None:
    up = make_linked_account(cardholder=holder["cardholder"])
    down = make_linked_account(cardholder=holder["cardholder"])
    ChannelFactory(acquirer=up.bank, kind="wallet")
    ChannelFactory(acquirer=down.bank, kind="wallet")
    holder["fake"].accounts[up.reference] = 12_345
    holder["fake"].down_channels.add(down.reference)
    response = holder["client"].get(reverse("payments:balances"), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    rows = {row.account: row for row in response.context["rows"]}
    assert (rows[up].available, rows[up].error) == (12_345, "")
    assert rows[down].available is None
    assert "not answering" in rows[down].error
    chinese = holder["client"].get(reverse("payments:balances"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "暂无响应" in {row.account: row for row in chinese.context["rows"]}[down].error
    html = response.content.decode()
    assert "123.45 CNY" in html
    assert "balance-error" in html
