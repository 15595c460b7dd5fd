"""Who sees what of one person's payment, tried as each bank's operator in the admin.

One cardholder holds cards at banks A and B; a payment on the B card is acquired by bank C at a merchant sponsored by
bank D. B (the issuer) sees it in full; C and D see what an acquirer sees; A does not see it at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from core.models import AuditLog
from core.personal import mask_name
from core.scoping import BANK_AUDITORS, BANK_OPERATORS
from members.models import BankOperator, Cardholder, MemberBank
from payments.models import PaymentIntent, Refund
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    StaffFactory,
    make_cardholder,
)
from tests.i18n import shown

pytestmark = pytest.mark.django_db

NAME = "欧阳明月"
PHONE = "13987654321"
MASKED_PHONE = "***-****-4321"
MASKED_NAME = mask_name(NAME)
DEVICE = "device-of-the-person-77"
RISK_MESSAGE = "Velocity: 5 payments per cardholder in the hour, above 3."


def _staff(bank: MemberBank, role: str = BankOperator.Role.OPERATOR, username: str = "") -> Any:
    user = StaffFactory(**({"username": username} if username else {}))
    user.groups.add(Group.objects.get(name=BANK_OPERATORS if role == BankOperator.Role.OPERATOR else BANK_AUDITORS))
    BankOperator.objects.create(user=user, bank=bank, role=role)
    return user


def _login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def world() -> dict[str, Any]:
    banks = {code: MemberBankFactory(code=code) for code in ("BKA", "BKB", "BKC", "BKD")}
    holder = make_cardholder(display_name=NAME, phone=PHONE)
    card_a = CardFactory(cardholder=holder, product=CardProductFactory(bank=banks["BKA"]), bin="62170011", last4="1111")
    card_b = CardFactory(
        cardholder=holder, product=CardProductFactory(bank=banks["BKB"], name="Jade Platinum"), bin="62258800"
    )
    card_b.last4 = "9876"
    card_b.save(update_fields=["last4"])
    merchant = MerchantFactory(sponsor_bank=banks["BKD"], display_name="Tea House Nanjing Road")
    payment = PaymentIntent.objects.create(
        merchant=merchant,
        cardholder=holder,
        card=card_b,
        issuer=banks["BKB"],
        acquirer=banks["BKC"],
        channel=ChannelFactory(acquirer=banks["BKC"]),
        amount=128800,
        amount_captured=128800,
        amount_refund_reserved=800,
        amount_refunded=800,
        status=PaymentIntent.Status.SUCCEEDED,
        points_earned=7345,
        points_reversed=45,
        device_id=DEVICE,
        risk_outcome="review",
        risk_reasons=[{"code": "velocity_count", "message": RISK_MESSAGE, "action": "review", "rule": None}],
    )
    refund = Refund.objects.create(
        intent=payment,
        intent_created_at=payment.created_at,
        merchant_id=payment.merchant_id,
        amount=800,
        reference=f"{payment.public_id}-r1",
        status="succeeded",
        points_reversed=45,
    )
    users = {code: _staff(bank, username=f"op-{code.lower()}") for code, bank in banks.items()}
    users["alliance"] = AllianceOperatorFactory(username="alliance-ops-lead")
    return {"banks": banks, "holder": holder, "card_a": card_a, "card_b": card_b, "payment": payment,
            "refund": refund, "users": users}  # fmt: skip


def _listed(client: Client, url: str, params: dict[str, Any] | None = None) -> set[int]:
    response = client.get(url, params or {})
    assert response.status_code == 200
    return set(response.context["cl"].queryset.values_list("pk", flat=True))


def _page_fields(response: Any) -> set[str]:
    return {name for fieldset in response.context["adminform"] for line in fieldset for name in line.fields}


def _inline_fields(response: Any, model: type) -> set[str]:
    for inline in response.context["inline_admin_formsets"]:
        if inline.opts.model is model:
            return {name for _, options in inline.fieldsets for name in options["fields"]}
    raise AssertionError(f"no inline for {model.__name__}")


PAYMENT_LIST = reverse("admin:payments_paymentintent_changelist")


def _payment_url(payment: PaymentIntent, view: str = "change") -> str:
    return reverse(f"admin:payments_paymentintent_{view}", args=[payment.pk])


def test_the_bank_of_the_other_card_does_not_see_the_payment(world: dict[str, Any]) -> None:
    payment, refund = world["payment"], world["refund"]
    bank_a = _login(world["users"]["BKA"])
    assert payment.pk not in _listed(bank_a, PAYMENT_LIST)
    assert bank_a.get(_payment_url(payment)).status_code == 404
    assert bank_a.get(_payment_url(payment, "history")).status_code == 404
    assert refund.pk not in _listed(bank_a, reverse("admin:payments_refund_changelist"))
    # A still sees its own card of the same person, and not the B card.
    cardholder_page = bank_a.get(reverse("admin:members_cardholder_change", args=[world["holder"].pk]))
    assert cardholder_page.status_code == 200
    assert "1111" in cardholder_page.content.decode()
    assert "9876" not in cardholder_page.content.decode()


@pytest.mark.parametrize("role", ["BKC", "BKD"], ids=["acquirer", "sponsor"])
def test_the_acquirer_and_the_sponsor_see_what_an_acquirer_sees(world: dict[str, Any], role: str) -> None:
    payment, holder = world["payment"], world["holder"]
    client = _login(world["users"][role])
    assert payment.pk in _listed(client, PAYMENT_LIST)

    response = client.get(_payment_url(payment))
    assert response.status_code == 200
    page = response.content.decode()
    # The acquirer's facts of the payment.
    for fact in ("Tea House Nanjing Road", "1,288.00", "62258800", "9876", "Jade Platinum", "BKB", "velocity_count"):
        assert fact in page, fact
    # Nothing of the person behind it, their card's page or their points.
    for hidden in (NAME, MASKED_NAME, MASKED_PHONE, DEVICE, RISK_MESSAGE, "points earned", "points reversed"):
        assert hidden not in page, hidden
    assert reverse("admin:members_cardholder_change", args=[holder.pk]) not in page
    assert reverse("admin:members_card_change", args=[world["card_b"].pk]) not in page
    assert not _page_fields(response) & {
        "cardholder", "card", "device_id", "points_earned", "risk_reasons", "points_amount", "points_amount_as_money",
    }  # fmt: skip
    assert {"card_bin", "card_last4", "amount_as_money", "merchant"} <= _page_fields(response)
    assert "points_reversed" not in _inline_fields(response, Refund)

    refund_list = client.get(reverse("admin:payments_refund_changelist"))
    assert refund_list.status_code == 200
    assert world["refund"].pk in set(refund_list.context["cl"].queryset.values_list("pk", flat=True))
    refund_page = client.get(reverse("admin:payments_refund_change", args=[world["refund"].pk]))
    assert refund_page.status_code == 200
    assert "points_reversed" not in _page_fields(refund_page)


def test_an_acquirer_cannot_find_the_payment_by_the_cardholder(world: dict[str, Any]) -> None:
    payment, holder = world["payment"], world["holder"]
    acquirer = _login(world["users"]["BKC"])
    assert payment.pk in _listed(acquirer, PAYMENT_LIST, {"q": payment.public_id})
    searchable = f"{payment.public_id} {payment.merchant_reference} {payment.merchant.code}"
    for term in (NAME, PHONE, "4321", str(holder.pk)):
        if term in searchable:  # a random id may hold a short number: that match says nothing of the cardholder
            continue
        assert payment.pk not in _listed(acquirer, PAYMENT_LIST, {"q": term}), term
    by_person = (
        {"cardholder": holder.pk},
        {"cardholder__id__exact": holder.pk},
        {"card__id__exact": world["card_b"].pk},
        {"device_id": DEVICE},
        {"points_earned__gt": 7000},
    )
    for params in by_person:
        assert payment.pk not in _listed(acquirer, PAYMENT_LIST, params), params
    assert world["refund"].pk not in _listed(
        acquirer, reverse("admin:payments_refund_changelist"), {"points_reversed": 45}
    )
    # The issuer's operator finds their cardholder's payment by the same filters.
    issuer = _login(world["users"]["BKB"])
    for params in by_person:
        assert payment.pk in _listed(issuer, PAYMENT_LIST, params), params


def test_the_issuer_and_the_alliance_see_the_payment_in_full(world: dict[str, Any]) -> None:
    payment, holder = world["payment"], world["holder"]
    for who in ("BKB", "alliance"):
        client = _login(world["users"][who])
        assert payment.pk in _listed(client, PAYMENT_LIST)
        response = client.get(_payment_url(payment))
        assert response.status_code == 200
        page = response.content.decode()
        # The name is stored encrypted and shown masked to everyone, the issuer included (its page is one click on).
        for fact in (MASKED_NAME, MASKED_PHONE, DEVICE, RISK_MESSAGE, "7345", "62258800", "9876"):
            assert fact in page, (who, fact)
        assert reverse("admin:members_cardholder_change", args=[holder.pk]) in page
        assert {"cardholder", "card", "points_earned", "device_id"} <= _page_fields(response)
        assert "points_reversed" in _inline_fields(response, Refund)
        refund_list = client.get(reverse("admin:payments_refund_changelist")).content.decode()
        assert ">45<" in refund_list


def test_the_risk_review_queue_names_nobody_to_the_acquirer(world: dict[str, Any]) -> None:
    payment = world["payment"]
    PaymentIntent.objects.filter(pk=payment.pk).update(
        status="requires_capture", amount_captured=0, amount_refund_reserved=0, amount_refunded=0,
        amount_capturable=128800, risk_review=True, points_earned=0, points_reversed=0,
    )  # fmt: skip
    Refund.objects.filter(pk=world["refund"].pk).update(status="failed")
    queue = reverse("admin:payments_riskreview_changelist")
    review = reverse("admin:payments_riskreview_change", args=[payment.pk])

    acquirer = _login(world["users"]["BKC"])
    listed = acquirer.get(queue).content.decode()
    assert payment.public_id in listed
    assert "velocity_count" in listed
    assert RISK_MESSAGE not in listed
    page = acquirer.get(review)
    assert page.status_code == 200
    assert not _page_fields(page) & {"cardholder", "card", "device_id", "risk_reasons"}
    for hidden in (NAME, MASKED_NAME, MASKED_PHONE, DEVICE, RISK_MESSAGE):
        assert hidden not in page.content.decode(), hidden

    issuer = _login(world["users"]["BKB"])
    assert RISK_MESSAGE in issuer.get(queue).content.decode()
    full = issuer.get(review).content.decode()
    assert MASKED_NAME in full
    assert DEVICE in full
    assert RISK_MESSAGE in full


def _log(user: Any, obj: Any, message: str) -> None:
    LogEntry.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(type(obj)),
        object_id=str(obj.pk),
        object_repr=str(obj.pk),
        action_flag=CHANGE,
        change_message=message,
    )


def test_history_pages_show_only_the_operators_own_banks_people(world: dict[str, Any]) -> None:
    users, payment, holder = world["users"], world["payment"], world["holder"]
    colleague_c = _staff(world["banks"]["BKC"], BankOperator.Role.AUDITOR, username="auditor-c")
    _log(colleague_c, payment, "checked by C")
    _log(users["BKB"], payment, "checked by B")
    _log(users["alliance"], payment, "checked by the alliance")

    acquirer = _login(users["BKC"])
    page = acquirer.get(_payment_url(payment, "history")).content.decode()
    assert "auditor-c" in page
    assert "checked by C" in page
    assert "op-bkb" not in page
    assert "checked by B" not in page
    assert "checked by the alliance" in page
    assert shown("alliance operator") in page
    assert "alliance-ops-lead" not in page

    issuer = _login(users["BKB"])
    page = issuer.get(_payment_url(payment, "history")).content.decode()
    assert "checked by B" in page
    assert "checked by C" not in page

    alliance = _login(users["alliance"])
    page = alliance.get(_payment_url(payment, "history")).content.decode()
    for entry in ("auditor-c", "op-bkb", "alliance-ops-lead"):
        assert entry in page

    # The same on any scoped model: the person's record, seen from each of the two banks of their cards.
    _log(users["BKA"], holder, "noted by A")
    _log(users["BKB"], holder, "noted by B")
    history = reverse("admin:members_cardholder_history", args=[holder.pk])
    page_a = _login(users["BKA"]).get(history).content.decode()
    assert "noted by A" in page_a
    assert "noted by B" not in page_a
    page_b = _login(users["BKB"]).get(history).content.decode()
    assert "noted by B" in page_b
    assert "noted by A" not in page_b


def _change_form_data(response: Any) -> dict[str, Any]:
    form = response.context["adminform"].form
    data = {name: form.initial.get(name, "") for name in form.fields}
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management.initial.get(name, management[name].value())
    return data


def test_an_operators_change_to_a_two_bank_cardholder_is_audited_under_their_bank(world: dict[str, Any]) -> None:
    holder, bank_a = world["holder"], world["banks"]["BKA"]
    url = reverse("admin:members_cardholder_change", args=[holder.pk])
    operator = _login(world["users"]["BKA"])
    data = _change_form_data(operator.get(url))
    data["new_display_name"] = "欧阳明"
    response = operator.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Cardholder.objects.get(pk=holder.pk).display_name == "欧阳明"
    row = AuditLog.objects.get(action="admin.change", object_type="members.cardholder", object_id=str(holder.pk))
    assert row.bank_id == bank_a.pk
    assert row.actor == world["users"]["BKA"]

    # A's auditor finds the row in the audit log; B's does not (it was A's operator acting).
    audit_list = reverse("admin:core_auditlog_changelist")
    auditor_a = _login(_staff(bank_a, BankOperator.Role.AUDITOR))
    assert row.pk in _listed(auditor_a, audit_list)
    auditor_b = _login(_staff(world["banks"]["BKB"], BankOperator.Role.AUDITOR))
    assert row.pk not in _listed(auditor_b, audit_list)


def test_an_alliance_operators_change_to_a_two_bank_cardholder_stays_without_a_bank(world: dict[str, Any]) -> None:
    from core.audit import audit_record

    holder = world["holder"]
    row = audit_record(
        actor=world["users"]["alliance"],
        action="test.touch",
        obj=holder,
        object_banks={c.bank_id for c in holder.cards.all()},
    )
    assert row.bank_id is None
    # An operator of both banks is ambiguous too; an operator of one plus an auditor of the other acts for the first.
    both = _staff(world["banks"]["BKA"])
    BankOperator.objects.create(user=both, bank=world["banks"]["BKB"], role=BankOperator.Role.OPERATOR)
    banks = {world["banks"]["BKA"].pk, world["banks"]["BKB"].pk}
    assert audit_record(actor=both, action="test.touch", obj=holder, object_banks=banks).bank_id is None
    mixed = _staff(world["banks"]["BKB"])
    BankOperator.objects.create(user=mixed, bank=world["banks"]["BKA"], role=BankOperator.Role.AUDITOR)
    assert (
        audit_record(actor=mixed, action="test.touch", obj=holder, object_banks=banks).bank_id
        == world["banks"]["BKB"].pk
    )
    # A cardholder acting on their own record is no operator: no bank guessed for them.
    assert audit_record(actor=holder.user, action="test.touch", obj=holder, object_banks=banks).bank_id is None


def test_a_payment_event_shows_the_sponsor_bank_no_points_or_merchant_notes() -> None:
    from merchants.models import Event
    from tests.factories import FACTORIES

    event = FACTORIES["merchants.event"]()
    payload = {"id": "pay_x", "amount": 128800, "points_earned": 7345, "metadata": {"note": "VIP-42"}}
    Event.objects.filter(pk=event.pk).update(payload=payload)
    url = reverse("admin:merchants_event_change", args=[event.pk])
    sponsor = StaffFactory()
    sponsor.groups.add(Group.objects.get(name=BANK_OPERATORS))
    BankOperator.objects.create(user=sponsor, bank=event.merchant.sponsor_bank, role=BankOperator.Role.OPERATOR)
    page = _login(sponsor).get(url).content.decode()
    assert "128800" in page
    assert "7345" not in page
    assert "VIP-42" not in page
    everything = _login(AllianceOperatorFactory()).get(url).content.decode()
    assert "7345" in everything
    assert "VIP-42" in everything
