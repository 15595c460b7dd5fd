"""Paying from a balance over the API: a wallet agreement or a wallet-funded code reaches the channel that keeps the
account, the way the demo's channels are set up (a wallet channel lists only "balance"); a method type that does not
match its token is refused."""

from __future__ import annotations

from typing import Any

import pytest

from payments.methods import agreement_grant, payment_code_generate
from payments.models import PaymentIntent
from tests.api.conftest import World, idem, new_api
from tests.factories import ChannelFactory, make_linked_account

pytestmark = pytest.mark.django_db
CARD_METHODS = ["card", "payment_code", "agreement"]


@pytest.fixture
def wallet(world: World) -> Any:
    """A wallet account of the world's cardholder, kept by its bank's wallet channels (live and sandbox), which take
    balance payments only; the acquirer's channels take cards only."""
    for channel in world.merchant.sponsor_bank.channels.all():
        channel.methods = CARD_METHODS
        channel.save()
    account = make_linked_account(cardholder=world.card.cardholder)
    ChannelFactory(acquirer=account.bank, kind="wallet", code="wallet-live", methods=["balance"])
    ChannelFactory(acquirer=account.bank, kind="wallet", code="wallet-sandbox", methods=["balance"], sandbox=True)
    return account


def _grant(world: World, **funding: Any) -> str:
    return agreement_grant(
        cardholder=world.card.cardholder,
        merchant=world.merchant,
        limit_per_payment=100_000,
        limit_per_month=1_000_000,
        **funding,
    ).token


def _pay(api: Any, method: dict[str, Any], amount: int = 1500) -> tuple[int, Any]:
    return api.post(
        "payments", {"amount": amount, "currency": "CNY", "confirm": True, "payment_method": method}, key=idem()
    )


@pytest.mark.parametrize("mode", ["test", "live"])
def test_a_wallet_agreement_pays_by_balance(world: World, wallet: Any, mode: str) -> None:
    api = new_api(world.merchant, mode=mode)
    status, payment = _pay(api, {"type": "balance", "token": _grant(world, linked_account=wallet)})
    assert status == 201, payment
    assert payment["status"] == "succeeded", payment
    assert payment["payment_method"]["type"] == "balance"
    intent = PaymentIntent.objects.get(public_id=payment["id"])
    assert intent.channel is not None
    assert intent.channel.code == ("wallet-sandbox" if mode == "test" else "wallet-live")
    assert intent.linked_account == wallet
    assert world.fake.instruments[f"{intent.public_id}-1"] == ("account", wallet.reference)


def test_a_wallet_funded_payment_code_pays_by_balance(world: World, wallet: Any) -> None:
    code = payment_code_generate(cardholder=world.card.cardholder, linked_account=wallet)
    status, payment = _pay(new_api(world.merchant, mode="live"), {"type": "payment_code", "code": code.code})
    assert status == 201, payment
    assert payment["status"] == "succeeded", payment
    assert PaymentIntent.objects.get(public_id=payment["id"]).channel.code == "wallet-live"  # type: ignore[union-attr]


def test_a_type_that_does_not_match_its_token_is_refused(world: World, wallet: Any) -> None:
    api = new_api(world.merchant, mode="live")
    card_token = _grant(world, card=world.card)
    wallet_token = _grant(world, linked_account=wallet)
    for method in ({"type": "balance", "token": card_token}, {"type": "agreement", "token": wallet_token}):
        status, body = _pay(api, method)
        assert status == 400, body
        assert body["error"]["code"] == "payment_method_mismatch"
        assert body["error"]["param"] == "payment_method.type"
    assert not PaymentIntent.objects.exists()
    assert world.fake.instruments == {}
    # The matching types pay.
    assert _pay(api, {"type": "agreement", "token": card_token})[1]["status"] == "succeeded"
    assert _pay(api, {"type": "balance", "token": wallet_token})[1]["status"] == "succeeded"
