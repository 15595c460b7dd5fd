"""Cardholders' names at rest: encrypted, shown masked, found by the exact name's keyed hash; kept out of audit rows
and Django's admin log."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from core.audit import REDACTED, snapshot
from core.errors import ValidationFailed
from core.models import AuditLog
from core.personal import mask_email, mask_name
from core.scoping import BANK_OPERATORS
from members import services
from members.models import BankOperator, Cardholder
from tests.dbscan import database_text
from tests.factories import PASSWORD, BinRangeFactory, CardholderFactory, StaffFactory, make_card, make_cardholder

pytestmark = pytest.mark.django_db


def operator_client(bank: Any) -> Client:
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=BANK_OPERATORS))
    BankOperator.objects.create(user=user, bank=bank, role=BankOperator.Role.OPERATOR)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def admin_change_data(page: Any, **changes: str) -> dict[str, Any]:
    """What the admin's change form would post back unchanged (inline management forms included), plus `changes`."""
    form = page.context["adminform"].form
    data: dict[str, Any] = {name: form[name].value() for name in form.fields}
    data = {key: ("" if value is None else value) for key, value in data.items() if value is not False}
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management[name].html_name: management[name].value() for name in management.fields})
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三明", "张*明"),
        ("王五", "王*"),
        ("欧阳小明", "欧**明"),
        ("John Smith", "J*** S****"),
        ("  Ｊｏｈｎ   Smith ", "J*** S****"),  # full-width letters and stray spaces read as the same name
        ("Li", "L*"),
        ("A", "*"),
        ("", ""),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_email() -> None:
    assert mask_email("owner@example.com") == "o****@example.com"
    assert mask_email(" x@example.com ") == "*@example.com"


def test_the_name_is_stored_encrypted_and_read_back_through_the_property() -> None:
    holder = make_cardholder(display_name="  张三明 ", phone="13700000011")
    stored = Cardholder.objects.get(pk=holder.pk)
    assert stored.display_name == "张三明"
    assert "张三明" not in stored.name_encrypted
    assert (stored.name_masked, stored.name_hash) == ("张*明", services.name_hash("张三明"))
    assert services.name_hash("张三明") == services.name_hash(" 张三明")  # spacing does not matter
    assert services.name_hash("John Smith") == services.name_hash("john  SMITH")
    assert services.name_hash("张三明") != services.name_hash("张三")
    assert str(stored) == "张*明 (***-****-0011)"
    # The constructor and the factory's create() take the property like a field, and a change re-encrypts.
    built = Cardholder(display_name="Jane Doe")
    assert (built.display_name, built.name_masked) == ("Jane Doe", "J*** D**")
    made = CardholderFactory(display_name="王五")
    made.display_name = "王六"
    made.save()
    assert Cardholder.objects.get(pk=made.pk).display_name == "王六"
    assert Cardholder.objects.get(pk=made.pk).name_masked == "王*"
    # The column is gone: nothing in the table holds the name in the clear.
    assert "张三明" not in database_text()


def test_a_name_too_long_is_refused_and_nothing_is_written() -> None:
    with pytest.raises(ValidationFailed) as raised:
        make_cardholder(display_name="名" * 101)
    assert raised.value.param == "display_name"
    assert not Cardholder.objects.exists()


def test_the_snapshot_of_a_cardholder_names_the_personal_fields_and_copies_none() -> None:
    holder = make_cardholder(display_name="张三明", phone="13700000012", national_id="11010519491231002X")
    picture = snapshot(holder)
    for name in (
        "name_encrypted",
        "name_hash",
        "name_masked",
        "phone_encrypted",
        "phone_hash",
        "phone_last4",
        "national_id_encrypted",
        "national_id_hash",
        "national_id_last4",
    ):
        assert picture[name] == REDACTED, name
    assert (picture["id"], picture["verification_level"]) == (holder.pk, holder.verification_level)
    text = json.dumps(picture, ensure_ascii=False)
    for value in ("张三明", "张*明", "13700000012", "0012", "11010519491231002X", "002X", holder.phone_hash):
        assert value not in text
    # An empty field stays empty: the row still shows whether it is set.
    assert snapshot(make_cardholder(phone="13700000013"))["national_id_encrypted"] == ""


def test_an_operator_finds_a_cardholder_by_the_exact_name_or_phone_and_sees_it_masked() -> None:
    holder = make_cardholder(display_name="张三明", phone="13700000021")
    card = make_card(holder, BinRangeFactory())
    make_cardholder(display_name="张三", phone="13700000022")
    client = operator_client(card.bank)
    url = reverse("admin:members_cardholder_changelist")

    def found(term: str) -> list[Cardholder]:
        return list(client.get(url, {"q": term}).context["cl"].queryset)

    assert found("张三明") == [holder]
    assert found(" 张三明 ") == [holder]
    assert found("13700000021") == [holder]
    assert found("张三") == []  # a part of the name, or another person's name outside the bank, finds nothing
    assert found("张") == []
    assert found("张*明") == []  # nor does the masked form
    listing = client.get(url).content.decode()
    assert "张*明" in listing
    assert "张三明" not in listing
    # Another bank's operator finds nobody by the exact name either.
    assert list(operator_client(BinRangeFactory().bank).get(url, {"q": "张三明"}).context["cl"].queryset) == []


def test_an_operator_renames_a_cardholder_and_no_log_keeps_either_name() -> None:
    holder = make_cardholder(display_name="张三明", phone="13700000031")
    card = make_card(holder, BinRangeFactory())
    client = operator_client(card.bank)
    change_url = reverse("admin:members_cardholder_change", args=[holder.pk])
    page = client.get(change_url)
    html = page.content.decode()
    assert "张*明" in html
    assert "张三明" not in html
    assert "13700000031" not in html
    response = client.post(change_url, admin_change_data(page, new_display_name="李四光", verification_level="2"))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    holder.refresh_from_db()
    assert (holder.display_name, holder.name_masked, holder.verification_level) == ("李四光", "李*光", 2)

    entry = AuditLog.objects.get(action="admin.change", object_type="members.cardholder")
    assert entry.object_repr == "李*光 (***-****-0031)"
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["verification_level"], entry.after["verification_level"]) == (1, 2)
    assert entry.after["name_encrypted"] == REDACTED
    log = LogEntry.objects.get(object_id=str(holder.pk), content_type__model="cardholder")
    assert log.object_repr == "李*光 (***-****-0031)"
    dumped = database_text()
    for value in ("张三明", "李四光", "13700000031"):
        assert value not in dumped

    # Left empty, the name stays as it was.
    page = client.get(change_url)
    assert client.post(change_url, admin_change_data(page)).status_code == 302
    holder.refresh_from_db()
    assert holder.display_name == "李四光"


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_names_and_drops_the_column() -> None:
    before = [("members", "0004_operator_permissions_all_models")]
    after = [("members", "0005_encrypt_cardholder_names")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        user = old.get_model("auth", "User").objects.create(username="migrated")
        old.get_model("members", "Cardholder").objects.create(
            user=user,
            display_name="王小明",
            phone_encrypted="x",
            phone_hash="h" * 64,
            phone_last4="0000",
            created_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        )
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        # Today's model, less the columns later migrations add.
        holder = Cardholder.objects.defer("segment_tags").get(user__username="migrated")
        assert (holder.display_name, holder.name_masked, holder.name_hash) == (
            "王小明",
            "王*明",
            services.name_hash("王小明"),
        )
        assert "王小明" not in database_text()
        # And back: the column returns with the name decrypted.
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        assert old.get_model("members", "Cardholder").objects.get(user_id=user.pk).display_name == "王小明"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
