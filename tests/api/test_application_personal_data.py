"""A merchant application's contact person at rest: encrypted, read through properties of the old names, shown
masked to the sponsor bank's operators and found by the exact phone or email."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from core.audit import REDACTED, snapshot
from core.errors import ValidationFailed
from core.models import AuditLog
from core.personal import email_hash, phone_hash
from merchants.models import MerchantApplication
from tests.dbscan import database_text
from tests.factories import MemberBankFactory, make_application
from tests.members.test_personal_data import operator_client

pytestmark = pytest.mark.django_db

CONTACT = {
    "contact_name": "Zhang Weiming",
    "contact_phone": "+86 591 8765 4321",
    "contact_email": "Zhang.W@Example.net",
}


def test_the_contact_is_stored_encrypted_and_read_back_through_the_properties() -> None:
    application = make_application(**{key: f" {value} " for key, value in CONTACT.items()})
    stored = MerchantApplication.objects.get(pk=application.pk)
    assert (stored.contact_name, stored.contact_phone, stored.contact_email) == tuple(CONTACT.values())
    assert (stored.contact_name_masked, stored.masked_contact_phone, stored.contact_email_masked) == (
        "Z**** W******",
        "****4321",
        "Z******@Example.net",
    )
    assert stored.contact_phone_hash == phone_hash("8659187654321")
    assert stored.contact_email_hash == email_hash("zhang.w@example.net")
    dumped = database_text()
    for value in (*CONTACT.values(), "8659187654321", "Zhang"):
        assert value not in dumped
    assert "福州示例餐饮有限公司" in dumped  # the business itself is no personal data, and the scan sees it


@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"contact_name": "  "}, "contact_name"),
        ({"contact_name": "x" * 101}, "contact_name"),
        ({"contact_phone": "12ab34567"}, "contact_phone"),
        ({"contact_phone": "- - - - - -"}, "contact_phone"),
        ({"contact_email": "not-an-email"}, "contact_email"),
        ({"contact_email": "a@" + "b" * 250 + ".com"}, "contact_email"),
    ],
)
def test_bad_contact_details_are_refused_and_nothing_is_written(override: dict[str, str], param: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        make_application(**override)
    assert raised.value.param == param
    assert not MerchantApplication.objects.exists()
    assert not AuditLog.objects.filter(action="merchant_application.submit").exists()


def test_the_sponsor_operator_sees_the_contact_masked_and_finds_it_by_the_exact_phone_or_email() -> None:
    bank = MemberBankFactory(acquiring_licence=True)
    application = make_application(sponsor_bank=bank, **CONTACT)
    client: Client = operator_client(bank)
    page = client.get(reverse("admin:merchants_merchantapplication_change", args=[application.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for masked in ("Z**** W******", "****4321", "Z******@Example.net"):
        assert masked in html
    for clear in (*CONTACT.values(), "Weiming"):
        assert clear not in html
    url = reverse("admin:merchants_merchantapplication_changelist")

    def found(term: str) -> list[Any]:
        return list(client.get(url, {"q": term}).context["cl"].queryset)

    assert found("zhang.w@example.net") == [application]
    assert found("8659187654321") == [application]
    assert found("+86 591-8765-4321") == [application]
    assert found("Example.net") == []
    assert found("87654321") == []
    assert found("Zhang") == []
    assert found("福州示例") == [application]  # the business is still found by its name


def test_audit_rows_of_an_application_hold_no_contact_details() -> None:
    application = make_application(**CONTACT)
    picture = snapshot(application)
    for name in (
        "contact_name_encrypted",
        "contact_name_masked",
        "contact_phone_encrypted",
        "contact_phone_hash",
        "contact_phone_last4",
        "contact_email_encrypted",
        "contact_email_hash",
        "contact_email_masked",
        "settlement_account_encrypted",
    ):
        assert picture[name] == REDACTED, name
    rows = json.dumps([snapshot(application), *AuditLog.objects.values("before", "after", "object_repr")], default=str)
    for value in ("Zhang", "8765", "4321", "Example.net"):
        assert value not in rows


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_contacts_and_drops_the_columns() -> None:
    before = [("merchants", "0011_drop_events_catch_up_schedule")]
    after = [("merchants", "0012_encrypt_application_contacts")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        bank = old.get_model("members", "MemberBank").objects.create(
            code="MIG", name_zh="迁", name_en="Mig", kind="joint_stock", joined_on=dt.date(2025, 1, 1)
        )
        old.get_model("merchants", "MerchantApplication").objects.create(
            legal_name="Mig Ltd",
            display_name="Mig",
            credit_code="91350100M000100Y43",
            category_code="5812",
            sponsor_bank=bank,
            settlement_account_name="Mig Ltd",
            settlement_bank_name="Bank",
            settlement_account_encrypted="x",
            settlement_account_last4="1234",
            store_name="S",
            store_city="C",
            **CONTACT,
        )
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        application = MerchantApplication.objects.get(legal_name="Mig Ltd")
        assert (application.contact_name, application.contact_phone, application.contact_email) == tuple(
            CONTACT.values()
        )
        assert application.contact_email_hash == email_hash(CONTACT["contact_email"])
        assert application.masked_contact_phone == "****4321"
        dumped = database_text()
        for value in CONTACT.values():
            assert value not in dumped
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        row = old.get_model("merchants", "MerchantApplication").objects.get(legal_name="Mig Ltd")
        assert (row.contact_name, row.contact_phone, row.contact_email) == tuple(CONTACT.values())
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
