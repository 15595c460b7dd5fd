"""Audit snapshots name sensitive fields and never copy them: secrets, encrypted and hashed values, fingerprints,
tokens, payment codes and personal data, by the model's declaration or, by default, by the field's name."""

from __future__ import annotations

import json

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from core.audit import REDACTED, audit_redacted, snapshot
from members.models import MemberBank
from tests.factories import FACTORIES

pytestmark = pytest.mark.django_db

SENSITIVE = {
    "members.card": ("token", "fingerprint"),
    "members.linkedaccount": ("reference", "fingerprint"),
    "merchants.apikey": ("key_hash",),
    "merchants.webhookendpoint": ("secret_encrypted",),
    "merchants.settlementaccount": ("account_encrypted",),
    "payments.paymentcode": ("code",),
    "payments.agreement": ("token_hash",),
}
KEPT = {
    "members.card": ("last4", "bin", "status"),
    "members.linkedaccount": ("masked_number", "status"),
    "merchants.apikey": ("prefix", "mode"),
    "merchants.webhookendpoint": ("url",),
    "merchants.settlementaccount": ("account_last4", "bank_name"),
    "payments.paymentcode": ("cardholder_id", "card_id"),
    "payments.agreement": ("public_id", "limit_per_payment"),
}


@pytest.mark.parametrize("label", sorted(SENSITIVE))
def test_a_snapshot_names_the_sensitive_fields_and_copies_none_of_them(label: str) -> None:
    row = FACTORIES[label]()
    picture = snapshot(row)
    text = json.dumps(picture, ensure_ascii=False)
    for name in SENSITIVE[label]:
        value = getattr(row, name)
        assert value, f"{label}.{name} is set by its factory, so the test would see it leak"
        assert picture[name] == REDACTED
        assert str(value) not in text, f"{label}.{name} was copied into the snapshot"
    for name in KEPT[label]:  # the rest of the row is still there
        assert picture[name] == json.loads(json.dumps(getattr(row, name), cls=DjangoJSONEncoder))
        assert picture[name] not in ("", None, REDACTED)


@pytest.mark.parametrize(
    ("name", "redacted"),
    [
        ("secret_encrypted", True),
        ("phone_hash", True),
        ("key_hash", True),
        ("fingerprint", True),
        ("token", True),
        ("agreement_token", True),
        ("secret", True),
        ("password", True),
        ("otp_code", True),
        ("status", False),
        ("last4", False),
        ("code", False),  # a bank's or merchant's code is no secret; a payment code is declared by its model
        ("display_name", False),
    ],
)
def test_sensitive_names_are_redacted_by_default_on_any_model(name: str, redacted: bool) -> None:
    assert audit_redacted(MemberBank(), name) is redacted  # a model that declares nothing


def test_an_empty_sensitive_field_stays_empty_so_a_snapshot_shows_whether_it_is_set() -> None:
    card = FACTORIES["members.card"]()
    card.fingerprint = ""
    assert snapshot(card)["fingerprint"] == ""
