from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from core.models import AuditLog
from core.scoping import BANK_AUDITORS, BANK_OPERATORS
from members.models import BankOperator, BindingStatus, Card
from tests.factories import PASSWORD, BinRangeFactory, StaffFactory, make_card, make_cardholder

pytestmark = pytest.mark.django_db


def _staff(bank: Any, role: str = BankOperator.Role.OPERATOR) -> Client:
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=BANK_OPERATORS if role == "operator" else BANK_AUDITORS))
    BankOperator.objects.create(user=user, bank=bank, role=role)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def person_at_two_banks() -> tuple[Any, Card, Card]:
    holder = make_cardholder(phone="13600000001")
    card_a = make_card(holder, BinRangeFactory())
    card_b = make_card(holder, BinRangeFactory())
    assert card_a.bank_id != card_b.bank_id
    return holder, card_a, card_b


def test_bank_a_operator_never_sees_bank_b_cards(person_at_two_banks: Any) -> None:
    holder, card_a, card_b = person_at_two_banks
    client = _staff(card_a.bank)
    listing = client.get(reverse("admin:members_card_changelist"))
    assert set(listing.context["cl"].queryset.values_list("pk", flat=True)) == {card_a.pk}
    assert client.get(reverse("admin:members_card_change", args=[card_b.pk])).status_code == 404
    page = client.get(reverse("admin:members_cardholder_change", args=[holder.pk]))
    assert page.status_code == 200
    inline_cards = [
        obj.pk
        for formset in page.context["inline_admin_formsets"]
        for obj in formset.formset.queryset
        if isinstance(obj, Card)
    ]
    assert inline_cards == [card_a.pk]
    html = page.content.decode()
    assert card_b.last4 not in html or card_b.last4 == card_a.last4
    assert "13600000001" not in html
    assert "***-****-0001" in html


def test_cardholder_search_only_by_exact_phone_through_the_hash(person_at_two_banks: Any) -> None:
    holder, card_a, _card_b = person_at_two_banks
    client = _staff(card_a.bank)
    url = reverse("admin:members_cardholder_changelist")
    assert list(client.get(url, {"q": "13600000001"}).context["cl"].queryset) == [holder]
    assert list(client.get(url, {"q": "1360000000"}).context["cl"].queryset) == []
    assert list(client.get(url, {"q": "0001"}).context["cl"].queryset) == []
    # Outside the operator's bank, the exact phone finds nothing either.
    stranger = _staff(BinRangeFactory().bank)
    assert list(stranger.get(url, {"q": "13600000001"}).context["cl"].queryset) == []


def test_freeze_action_goes_through_the_service_and_stays_in_scope(person_at_two_banks: Any) -> None:
    _holder, card_a, card_b = person_at_two_banks
    client = _staff(card_a.bank)
    url = reverse("admin:members_card_changelist")
    client.post(url, {"action": "freeze", "_selected_action": [card_a.pk, card_b.pk]})
    assert Card.objects.get(pk=card_a.pk).status == BindingStatus.FROZEN
    assert Card.objects.get(pk=card_b.pk).status == BindingStatus.ACTIVE
    audit = AuditLog.objects.get(action="members.card_freeze")
    assert (audit.object_id, audit.bank_id) == (str(card_a.pk), card_a.bank_id)


def test_auditor_reads_but_cannot_freeze(person_at_two_banks: Any) -> None:
    _holder, card_a, _card_b = person_at_two_banks
    client = _staff(card_a.bank, BankOperator.Role.AUDITOR)
    url = reverse("admin:members_card_changelist")
    assert client.get(url).status_code == 200
    client.post(url, {"action": "freeze", "_selected_action": [card_a.pk]})
    assert Card.objects.get(pk=card_a.pk).status == BindingStatus.ACTIVE


def test_cards_cannot_be_added_in_the_admin(alliance_user: Any) -> None:
    client = Client()
    client.force_login(alliance_user)
    assert client.get(reverse("admin:members_card_add")).status_code == 403
    assert client.get(reverse("admin:members_cardholder_add")).status_code == 403


def test_alliance_operator_publishes_consent_texts_as_new_versions(alliance_user: Any) -> None:
    from members.models import ConsentText

    client = Client()
    client.force_login(alliance_user)
    url = reverse("admin:members_consenttext_add")
    for expected in (1, 2):
        response = client.post(url, {"purpose": "marketing", "text_zh": "营销", "text_en": "Marketing"})
        assert response.status_code == 302
        assert ConsentText.objects.filter(purpose="marketing").latest("version").version == expected
    text = ConsentText.objects.get(purpose="marketing", version=1)
    page = client.get(reverse("admin:members_consenttext_change", args=[text.pk]))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert AuditLog.objects.filter(action="members.consent_text_publish").count() == 2
