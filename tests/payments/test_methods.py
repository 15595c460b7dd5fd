"""Payment codes, agreements and balance payments over the in-process channel."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.utils import timezone

from core.crypto import keyed_hash
from core.errors import Conflict, NotFound, ValidationFailed
from members.services import card_freeze
from payments import methods, services
from payments.models import Agreement, PaymentCode, PaymentIntent
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    make_linked_account,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
Status = PaymentIntent.Status


def key() -> str:
    return f"method-{next(_keys)}"


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=issuer))
    merchant = MerchantFactory(sponsor_bank=acquirer)
    channel = ChannelFactory(acquirer=acquirer, code="acq-1")
    return {"card": card, "cardholder": card.cardholder, "merchant": merchant, "channel": channel, "fake": channel_fake}


def create(world: dict[str, Any], amount: int = 1_000, **kw: Any) -> PaymentIntent:
    kw.setdefault("merchant", world["merchant"])
    return services.payment_create(amount=amount, currency="CNY", idempotency_key=key(), confirm=True, **kw)


# --- payment codes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("confirm", [True, False])
def test_a_code_another_till_takes_after_it_was_read_writes_nothing(
    world: dict[str, Any], monkeypatch: Any, confirm: bool, fresh_risk_counters: Any
) -> None:
    """Between the read of the code and the transaction that writes the payment, another till uses the code: the
    guarded take finds it used, and nothing is written (no payment, no decision, no attempt), no channel is called
    and the velocity counters are left as they were (the code is taken before the risk check counts anything)."""
    from payments.models import PaymentAttempt, RoutingDecision

    code = methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    find = methods.payment_code_find

    def find_then_lose_the_race(shown: str) -> methods.Funding:
        funding = find(shown)
        PaymentCode.objects.filter(pk=code.pk).update(used_at=timezone.now())  # the other till's take
        return funding

    monkeypatch.setattr(methods, "payment_code_find", find_then_lose_the_race)
    with pytest.raises(Conflict) as error:
        services.payment_create(
            merchant=world["merchant"],
            amount=1_000,
            currency="CNY",
            payment_code=code.code,
            idempotency_key=key(),
            confirm=confirm,
        )
    assert error.value.code == "payment_code_used"
    assert not PaymentIntent.objects.exists()
    assert not RoutingDecision.objects.exists()
    assert not PaymentAttempt.objects.exists()
    assert world["fake"].calls == []
    counted = {key: value for key, (value, _expires) in fresh_risk_counters._values.items()}
    assert not any(key.startswith(f"card:{world['card'].pk}:") for key in counted), counted


def test_payment_code_pays_once_without_naming_the_cardholder(world: dict[str, Any]) -> None:
    code = methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    assert len(code.code) == 18
    assert code.code.isdigit()
    assert code.expires_at == code.created_at + dt.timedelta(seconds=60)
    assert code.qr_payload == f"mengka://pay?code={code.code}"
    intent = create(world, payment_code=code.code)
    assert (intent.status, intent.method) == (Status.SUCCEEDED, "payment_code")
    assert (intent.cardholder, intent.card, intent.payment_code) == (world["cardholder"], world["card"], code)
    assert world["fake"].instruments[f"{intent.public_id}-1"] == ("code", code.code)
    code.refresh_from_db()
    assert code.used_at is not None
    with pytest.raises(Conflict) as error:
        create(world, payment_code=code.code)
    assert error.value.code == "payment_code_used"
    assert PaymentIntent.objects.count() == 1


def test_a_repeated_request_replays_the_payment_rather_than_refusing_the_used_code(world: dict[str, Any]) -> None:
    code = methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    request = {"merchant": world["merchant"], "amount": 1_000, "currency": "CNY", "payment_code": code.code}
    first = services.payment_create(idempotency_key="same", confirm=True, **request)
    again = services.payment_create(idempotency_key="same", confirm=True, **request)
    assert first.pk == again.pk


def test_expired_code_is_refused(world: dict[str, Any]) -> None:
    code = methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    PaymentCode.objects.filter(pk=code.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(ValidationFailed) as error:
        create(world, payment_code=code.code)
    assert error.value.code == "payment_code_expired"
    assert not PaymentIntent.objects.exists()


def test_a_new_code_retires_the_previous_one(world: dict[str, Any]) -> None:
    old = methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    with pytest.raises(ValidationFailed) as error:
        create(world, payment_code=old.code)
    assert error.value.code == "payment_code_expired"


def test_code_on_a_frozen_card_is_refused_and_stays_unused(world: dict[str, Any]) -> None:
    code = methods.payment_code_generate(cardholder=world["cardholder"], card=world["card"])
    card_freeze(card=world["card"], actor=None)
    with pytest.raises(ValidationFailed) as error:
        create(world, payment_code=code.code)
    assert error.value.code == "card_not_active"
    code.refresh_from_db()
    assert code.used_at is None


@pytest.mark.parametrize(
    ("value", "exception", "code"),
    [("123", ValidationFailed, "payment_code_invalid"), ("280000000000000000", NotFound, "payment_code_invalid")],
)
def test_malformed_or_unknown_codes(world: dict[str, Any], value: str, exception: type, code: str) -> None:
    with pytest.raises(exception) as error:
        create(world, payment_code=value)
    assert error.value.code == code


def test_someone_elses_code_cannot_be_generated(world: dict[str, Any]) -> None:
    with pytest.raises(NotFound):
        methods.payment_code_generate(cardholder=world["cardholder"], card=CardFactory())


# --- agreements ---------------------------------------------------------------------------------------------------


@pytest.fixture
def granted(world: dict[str, Any]) -> methods.GrantedAgreement:
    return methods.agreement_grant(
        cardholder=world["cardholder"],
        merchant=world["merchant"],
        card=world["card"],
        limit_per_payment=5_000,
        limit_per_month=8_000,
    )


def test_agreement_pays_within_its_limits(world: dict[str, Any], granted: methods.GrantedAgreement) -> None:
    intent = create(world, 5_000, agreement_token=granted.token)
    assert (intent.status, intent.method, intent.agreement) == (Status.SUCCEEDED, "agreement", granted.agreement)
    assert (intent.cardholder, intent.card) == (world["cardholder"], world["card"])
    with pytest.raises(ValidationFailed) as error:
        create(world, 5_001, agreement_token=granted.token)
    assert error.value.code == "agreement_limit_exceeded"
    with pytest.raises(ValidationFailed) as error:
        create(world, 3_001, agreement_token=granted.token)
    assert error.value.code == "agreement_monthly_limit_exceeded"
    assert create(world, 3_000, agreement_token=granted.token).status == Status.SUCCEEDED


def test_a_failed_payment_does_not_use_up_the_monthly_limit(
    world: dict[str, Any], granted: methods.GrantedAgreement
) -> None:
    assert create(world, 4_951, agreement_token=granted.token).status == Status.FAILED  # …51: declined
    assert create(world, 5_000, agreement_token=granted.token).status == Status.SUCCEEDED
    assert create(world, 3_000, agreement_token=granted.token).status == Status.SUCCEEDED  # 8,000: the limit


def test_agreement_token_is_useless_to_another_merchant(
    world: dict[str, Any], granted: methods.GrantedAgreement
) -> None:
    with pytest.raises(NotFound) as error:
        create(world, merchant=MerchantFactory(), agreement_token=granted.token)
    assert error.value.code == "agreement_invalid"


def test_revoked_agreement_is_refused(world: dict[str, Any], granted: methods.GrantedAgreement) -> None:
    revoked = methods.agreement_revoke(cardholder=world["cardholder"], agreement_id=granted.agreement.public_id)
    assert revoked.revoked_at is not None
    with pytest.raises(ValidationFailed) as error:
        create(world, agreement_token=granted.token)
    assert error.value.code == "agreement_revoked"
    with pytest.raises(NotFound):
        methods.agreement_revoke(cardholder=CardFactory().cardholder, agreement_id=granted.agreement.public_id)


def test_an_agreement_keeps_only_its_tokens_keyed_hash_and_a_hint(granted: methods.GrantedAgreement) -> None:
    token = granted.token
    assert token.startswith("agt_")
    stored = Agreement.objects.filter(pk=granted.agreement.pk).values().get()
    assert stored["token_hash"] == keyed_hash(token, purpose="agreement-token")
    assert stored["token_hint"] == f"agt_…{token[-4:]}"
    assert not [name for name, value in stored.items() if token in str(value)]


def test_agreement_limits_must_be_ordered(world: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as error:
        methods.agreement_grant(
            cardholder=world["cardholder"],
            merchant=world["merchant"],
            card=world["card"],
            limit_per_payment=5_000,
            limit_per_month=4_000,
        )
    assert error.value.code == "invalid_limits"


# --- balance ------------------------------------------------------------------------------------------------------


def test_balance_payment_goes_to_the_channel_that_keeps_the_account(world: dict[str, Any]) -> None:
    account = make_linked_account(cardholder=world["cardholder"])
    wallet = ChannelFactory(acquirer=account.bank, kind="wallet", code="wallet-own")
    ChannelFactory(kind="wallet", code="wallet-other", fee_percent="0.0001")  # cheaper, but another member's
    intent = create(world, 2_000, cardholder=world["cardholder"], linked_account=account)
    assert (intent.status, intent.method, intent.channel, intent.issuer) == (
        Status.SUCCEEDED,
        "balance",
        wallet,
        account.bank,
    )
    assert world["fake"].instruments[f"{intent.public_id}-1"] == ("account", account.reference)
    decision = intent.routing_decisions.get()
    dropped = {c["channel"]: c["dropped"] for c in decision.candidates}
    assert dropped["acq-1"] == dropped["wallet-other"] == "does not keep the payer's account"


def test_balance_needs_an_account_of_the_payer(world: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as error:
        create(world, cardholder=world["cardholder"], method="balance")
    assert error.value.code == "parameter_missing"
    with pytest.raises(NotFound):
        create(world, cardholder=world["cardholder"], linked_account=make_linked_account())


def test_payment_code_funded_by_a_balance(world: dict[str, Any]) -> None:
    account = make_linked_account(cardholder=world["cardholder"])
    ChannelFactory(acquirer=account.bank, kind="wallet")
    code = methods.payment_code_generate(cardholder=world["cardholder"], linked_account=account)
    intent = create(world, payment_code=code.code)
    assert (intent.status, intent.method, intent.linked_account) == (Status.SUCCEEDED, "payment_code", account)
    assert world["fake"].instruments[f"{intent.public_id}-1"] == ("account", account.reference)
