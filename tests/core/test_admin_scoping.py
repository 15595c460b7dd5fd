"""Walks every model registered in the admin: none can slip in unscoped."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from core.admin_base import ScopeMixin
from core.models import AuditLog
from core.scoping import bank_ids_of
from members.models import BankOperator, MemberBank
from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory, MemberBankFactory, StaffFactory, bank_operator

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)


def _urls(model: Any, obj: Any) -> tuple[str, str]:
    info = (model._meta.app_label, model._meta.model_name)
    return reverse("admin:{}_{}_changelist".format(*info)), reverse("admin:{}_{}_change".format(*info), args=[obj.pk])


def _login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _bank_operator(bank: MemberBank) -> Any:
    return bank_operator(bank)


def test_every_registered_model_declares_its_scope() -> None:
    for model, model_admin in REGISTRY:
        label = model._meta.label_lower
        assert isinstance(model_admin, ScopeMixin), f"{label} is registered without the scoped admin"
        declared = [bool(model_admin.alliance_only), bool(model_admin.scope_field), bool(model_admin.shared_read)]
        assert declared.count(True) == 1, f"{label} must declare exactly one of scope_field, alliance_only, shared_read"
        assert label in FACTORIES, f"{label} has no factory in tests/factories.py: the scoping walk cannot check it"
        for inline in model_admin.inlines:
            assert issubclass(inline, ScopeMixin), f"inline {inline.__name__} on {label} is not scoped"


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=[m._meta.label_lower for m, _ in REGISTRY])
def test_scope_is_enforced(model: Any, model_admin: Any) -> None:
    factory = FACTORIES[model._meta.label_lower]
    inside, outside = factory(), factory()
    changelist, inside_url = _urls(model, inside)
    _, outside_url = _urls(model, outside)

    alliance = _login(AllianceOperatorFactory())
    assert alliance.get(changelist).status_code == 200
    assert alliance.get(inside_url).status_code == 200
    assert alliance.get(outside_url).status_code == 200

    nobody = _login(StaffFactory())
    assert nobody.get(changelist).status_code == 403
    assert nobody.get(inside_url).status_code in (403, 404)

    if model_admin.alliance_only:
        operator = _login(_bank_operator(MemberBankFactory()))
        assert operator.get(changelist).status_code == 403
        assert operator.get(inside_url).status_code in (403, 404)
        return

    if model_admin.shared_read:
        # Terms every bank works under: any bank's operator reads every row and changes none.
        user = _bank_operator(MemberBankFactory())
        operator = _login(user)
        response = operator.get(changelist)
        assert response.status_code == 200
        visible = set(response.context["cl"].queryset.values_list("pk", flat=True))
        assert {inside.pk, outside.pk} <= visible
        page = operator.get(inside_url)
        assert page.status_code == 200
        assert not page.context["has_change_permission"]
        request = page.wsgi_request
        request.user = user
        assert not model_admin.has_change_permission(request, inside)
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_delete_permission(request, inside)
        return

    inside_banks = bank_ids_of(inside, model_admin.scope_field)
    outside_banks = bank_ids_of(outside, model_admin.scope_field)
    assert inside_banks, "factory must create the row under a bank"
    assert outside_banks, "factory must create the row under a bank"
    assert not inside_banks & outside_banks, "factory must use a new bank per row"
    user = _bank_operator(MemberBank.objects.get(pk=next(iter(inside_banks))))
    operator = _login(user)
    response = operator.get(changelist)
    assert response.status_code == 200
    visible = set(response.context["cl"].queryset.values_list("pk", flat=True))
    assert inside.pk in visible
    assert outside.pk not in visible
    assert operator.get(inside_url).status_code == 200
    assert operator.get(outside_url).status_code == 404

    # History: the page of a row outside the scope is a 404; inside, another bank's operator's entries are not listed.
    outsider = _bank_operator(MemberBank.objects.get(pk=next(iter(outside_banks))))
    _log_change(outsider, inside, "outsider was here")
    _log_change(user, inside, "insider was here")
    history = operator.get(_history_url(model, inside))
    assert history.status_code == 200
    page = history.content.decode()
    assert "insider was here" in page
    assert "outsider was here" not in page
    assert outsider.username not in page
    assert operator.get(_history_url(model, outside)).status_code == 404


def _history_url(model: Any, obj: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_history", args=[obj.pk])


def _log_change(user: Any, obj: Any, message: str) -> None:
    LogEntry.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),  # as the admin logs it
        object_id=str(obj.pk),
        object_repr="row",
        action_flag=CHANGE,
        change_message=message,
    )


@pytest.mark.django_db
def test_bank_operator_cannot_act_on_or_pick_rows_outside_scope() -> None:
    mine, theirs = MemberBankFactory(), MemberBankFactory()
    operator_user = _bank_operator(mine)
    operator = _login(operator_user)
    changelist = reverse("admin:members_memberbank_changelist")
    # An action posted with an id outside the scope touches nothing.
    operator.post(changelist, {"action": "delete_selected", "_selected_action": [theirs.pk], "post": "yes"})
    assert MemberBank.objects.filter(pk=theirs.pk).exists()
    # Foreign-key pickers offer only the operator's banks.
    request = operator.get(reverse("admin:members_bankoperator_changelist")).wsgi_request
    request.user = operator_user
    field = admin.site._registry[BankOperator].formfield_for_foreignkey(BankOperator._meta.get_field("bank"), request)
    assert list(field.queryset) == [mine]
    # Search cannot reach other banks either.
    response = operator.get(changelist, {"q": theirs.code})
    assert list(response.context["cl"].queryset) == []


@pytest.mark.django_db
def test_admin_changes_are_audited_with_before_and_after() -> None:
    bank = MemberBankFactory(name_en="Old name")
    user = AllianceOperatorFactory()
    client = _login(user)
    url = reverse("admin:core_calendarday_add")
    response = client.post(url, {"date": "2041-05-04", "kind": "holiday", "name": "Test day"})
    assert response.status_code == 302
    added = AuditLog.objects.get(action="admin.add", object_type="core.calendarday")
    assert added.actor == user
    assert added.after["name"] == "Test day"
    assert added.before is None

    change_url = reverse("admin:members_memberbank_change", args=[bank.pk])
    form = client.get(change_url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items() if v is not False}
    data["name_en"] = "New name"
    response = client.post(change_url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    changed = AuditLog.objects.get(action="admin.change", object_type="members.memberbank", object_id=str(bank.pk))
    assert changed.before["name_en"] == "Old name"
    assert changed.after["name_en"] == "New name"
    assert changed.bank_id == bank.pk


@pytest.mark.django_db
def test_a_many_valued_scope_is_an_exists_semi_join_that_finds_each_row_once() -> None:
    from core.scoping import OperatorScope, scope_queryset
    from members.models import Card, Cardholder
    from tests.factories import CardholderFactory, card_at

    bank, other = MemberBankFactory(), MemberBankFactory()
    twice, elsewhere, none = CardholderFactory(), CardholderFactory(), CardholderFactory()
    card_at(twice, bank)
    card_at(twice, bank)
    card_at(twice, other)
    card_at(elsewhere, other)
    scope = OperatorScope(False, frozenset({bank.pk}), frozenset({bank.pk}))
    holders = scope_queryset(Cardholder.objects.all(), scope, "cards__bank", False)
    sql = str(holders.query)
    # Straight from the cards, correlated on the cardholder: no `IN` over every match, no second cardholder scan.
    assert "EXISTS(SELECT" in sql
    assert " IN (SELECT" not in sql
    assert 'FROM "members_card" U0 WHERE' in sql
    assert '"members_cardholder" U' not in sql
    assert list(holders) == [twice]
    assert holders.count() == 1
    assert none not in holders
    # A path that reaches the many-valued step through a foreign key: the holder's cards elsewhere are in scope too.
    cards = scope_queryset(Card.objects.all(), scope, "cardholder__cards__bank", False)
    assert "EXISTS(SELECT" in str(cards.query)
    assert set(cards) == set(Card.objects.filter(cardholder=twice))


@pytest.mark.django_db
def test_a_scope_path_is_an_uncorrelated_in_of_the_related_keys_meeting_its_condition() -> None:
    from django.db.models import F, Q

    from core.scoping import OperatorScope, ScopePath, bank_ids_of, scope_queryset
    from members.models import Card, Cardholder
    from tests.factories import CardholderFactory, card_at

    bank, other = MemberBankFactory(), MemberBankFactory()
    twice, elsewhere = CardholderFactory(), CardholderFactory()
    card_at(twice, bank)
    card_at(twice, bank)
    card_at(elsewhere, other)
    scope = OperatorScope(False, frozenset({bank.pk}), frozenset({bank.pk}))
    along = ScopePath("cards__bank", Q(cardholder_id=F("cardholder_id")))
    holders = scope_queryset(Cardholder.objects.all(), scope, along, False)
    sql = str(holders.query)
    # The cards' own subquery, not referring to the cardholder row (as Citus wants beside a coordinator table).
    assert " IN (SELECT" in sql
    assert "EXISTS" not in sql
    assert list(holders) == [twice]
    assert holders.count() == 1
    assert bank_ids_of(twice, along) == {bank.pk}
    # Through a foreign key first: a card's holder's cards.
    cards = scope_queryset(Card.objects.all(), scope, ScopePath("cardholder__cards__bank", Q()), False)
    assert set(cards) == set(Card.objects.filter(cardholder=twice))
    with pytest.raises(ValueError, match="reverse foreign key"):
        scope_queryset(Card.objects.all(), scope, ScopePath("bank", Q()), False)
