"""After the demo, a merchant application from the public form and an operator's change to a cardholder in the admin,
the database read as a dump would read it holds no personal data in the clear: no cardholder's name, phone or
resident ID number, no contact person's name, phone or email."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from alliance.demo import DemoContext, seed_all
from core.crypto import decrypt
from members.demo import DEMO_PASSWORD, DEMO_PHONE, DEMO_USERNAME
from members.models import BankOperator, Cardholder
from merchants.models import MerchantApplication
from payments.connectors import reset_connectors
from tests.dbscan import database_text
from tests.members.test_personal_data import admin_change_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(simulator: Any, simulator_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from payments import demo as payments_demo

    settings.SIMULATOR = {
        **settings.SIMULATOR,
        "URL": simulator_server.url,
        "KEY_ID": simulator_server.key_id,
        "SECRET": simulator_server.secret,
    }
    reset_connectors()
    monkeypatch.setitem(payments_demo.HISTORY, "small", 20)  # every kind of payment, fewer of the plain ones
    seed_all(DemoContext(scale="small", out=io.StringIO()))
    yield
    reset_connectors()


def _personal_values() -> set[str]:
    values: set[str] = set()
    for holder in Cardholder.objects.all():
        values.add(holder.display_name)
        values.add(decrypt(holder.phone_encrypted))
        if holder.national_id_encrypted:
            values.add(decrypt(holder.national_id_encrypted))
    for application in MerchantApplication.objects.all():
        values.update((application.contact_name, application.contact_phone, application.contact_email))
    return values


def test_no_personal_data_in_the_clear_anywhere_in_the_database(demo: Any) -> None:
    from merchants.selectors import acquiring_banks

    bank = acquiring_banks()[0]
    public = Client()
    response = public.post(
        "/merchants/apply",
        {
            "legal_name": "福州隐私测试有限公司", "display_name": "隐私", "credit_code": "91350100M000100Y43",
            "category_code": "5812", "spend_category": "dining", "sponsor_bank": bank.pk,
            "settlement_account_name": "福州隐私测试有限公司", "settlement_bank_name": "Example Bank",
            "settlement_account_number": "6222020000112233445", "contact_name": "林徽音",
            "contact_phone": "13911112222", "contact_email": "lin.huiyin@example.org", "store_name": "三坊七巷店",
            "store_city": "福州",
        },
    )  # fmt: skip
    assert response.status_code == 201

    # The demo's own cardholder is renamed by an operator of one of their banks, in the admin.
    holder = Cardholder.objects.get(user__username=DEMO_USERNAME)
    old_name = holder.display_name
    operator = BankOperator.objects.filter(bank__cards__cardholder=holder, role="operator").first()
    assert operator is not None
    staff = Client()
    assert staff.login(username=operator.user.username, password=DEMO_PASSWORD)
    change_url = reverse("admin:members_cardholder_change", args=[holder.pk])
    page = staff.get(change_url)
    assert staff.post(change_url, admin_change_data(page, new_display_name="王大明")).status_code == 302

    values = _personal_values()
    assert {"王大明", DEMO_PHONE, "林徽音", "13911112222", "lin.huiyin@example.org"} <= values
    assert len(values) > 400  # every demo cardholder's name and phone, half of them with an ID number
    values.add(old_name)
    dumped = database_text()
    leaked = sorted(
        value
        for value in values
        if value in dumped or json.dumps(value)[1:-1] in dumped  # as it is, or escaped in a JSON text
    )
    assert leaked == []
    # The scan sees what is there: the masked forms, the business and the logins.
    holder.refresh_from_db()
    for visible in (holder.name_masked, "福州隐私测试有限公司", DEMO_USERNAME, operator.user.username):
        assert visible in dumped
