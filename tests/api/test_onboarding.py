"""Merchant onboarding: the public application, the sponsor bank's review, and four-eyes settlement changes."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from core.approvals import approval_approve
from core.crypto import decrypt
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest, AuditLog
from merchants import services
from merchants.models import ApiKey, Merchant, MerchantApplication, SettlementAccount, Store
from merchants.uscc import uscc_check_character, uscc_valid
from tests.api.conftest import Api, collect_keys
from tests.factories import (
    VALID_CREDIT_CODE,
    MemberBankFactory,
    bank_operator,
    make_application,
)

pytestmark = pytest.mark.django_db


def operator_of(bank: Any) -> Any:
    return bank_operator(bank)


def test_credit_code_checksum() -> None:
    assert uscc_valid("91350100M000100Y43")
    assert uscc_valid("91110000600037341L")
    assert not uscc_valid("91350100M000100Y44")  # wrong check character
    assert not uscc_valid("91350100M000100Y4")  # short
    assert not uscc_valid("91350100M0001O0Y43")  # O is not in the alphabet
    assert uscc_check_character("91350100M000100Y4") == "3"


def test_application_form_submits(client: Any) -> None:
    bank = MemberBankFactory(acquiring_licence=True)
    MemberBankFactory(acquiring_licence=False, code="NOACQ")
    page = client.get("/merchants/apply")
    assert page.status_code == 200
    assert b"NOACQ" not in page.content
    response = client.post(
        "/merchants/apply",
        {
            "legal_name": "福州示例餐饮有限公司", "display_name": "示例", "credit_code": VALID_CREDIT_CODE,
            "category_code": "5812", "spend_category": "dining", "sponsor_bank": bank.pk,
            "settlement_account_name": "福州示例餐饮有限公司", "settlement_bank_name": "Example Bank",
            "settlement_account_number": "6222020000112233445", "contact_name": "Li", "contact_phone": "13800000000",
            "contact_email": "a@example.com", "store_name": "五一路店", "store_city": "福州",
        },
    )  # fmt: skip
    assert response.status_code == 201
    application = MerchantApplication.objects.get()
    assert (application.status, application.settlement_account_last4) == ("submitted", "3445")
    assert "6222020000112233445" not in application.settlement_account_encrypted
    assert decrypt(application.settlement_account_encrypted) == "6222020000112233445"


@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"credit_code": "91350100M000100Y44"}, "credit_code"),
        ({"settlement_account_name": "Someone Else"}, "settlement_account_name"),
        ({"settlement_account_number": "12ab"}, "account_number"),
        ({"settlement_account_number": "6222020000112233²"}, "account_number"),
    ],
)
def test_application_refusals(override: dict[str, str], param: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        make_application(**override)
    assert raised.value.param == param
    assert not MerchantApplication.objects.exists()


def test_sponsor_needs_an_acquiring_licence() -> None:
    with pytest.raises(ValidationFailed):
        make_application(sponsor_bank=MemberBankFactory(acquiring_licence=False))


def test_one_open_application_per_credit_code() -> None:
    make_application()
    with pytest.raises(Conflict):
        make_application()


def test_form_shows_refusals(client: Any) -> None:
    bank = MemberBankFactory(acquiring_licence=True)
    response = client.post(
        "/merchants/apply",
        {
            "legal_name": "A公司", "display_name": "A", "credit_code": "91350100M000100Y44", "category_code": "5812",
            "spend_category": "dining", "sponsor_bank": bank.pk, "settlement_account_name": "A公司",
            "settlement_bank_name": "B", "settlement_account_number": "6222020000112233445", "contact_name": "Li",
            "contact_phone": "13800000000", "contact_email": "a@example.com", "store_name": "S", "store_city": "C",
        },
    )  # fmt: skip
    assert response.status_code == 422
    assert not MerchantApplication.objects.exists()


def test_approval_creates_merchant_store_and_keys(django_capture_on_commit_callbacks: Any) -> None:
    application = make_application()
    operator = operator_of(application.sponsor_bank)
    with pytest.raises(ValidationFailed):
        services.merchant_application_approve(application=application, actor=operator)  # no risk grade yet
    MerchantApplication.objects.filter(pk=application.pk).update(risk_grade="low")
    with django_capture_on_commit_callbacks(execute=True):
        approved = services.merchant_application_approve(application=application, actor=operator)
    merchant = approved.merchant
    assert (merchant.legal_name, merchant.sponsor_bank, merchant.category_code) == (
        "福州示例餐饮有限公司",
        application.sponsor_bank,
        "5812",
    )
    stores = Store.objects.filter(merchant=merchant)
    assert sorted(stores.values_list("code", "name", "livemode")) == [
        ("S001", "五一路店", False),
        ("S001", "五一路店", True),
    ]
    assert approved.store.livemode is True
    assert SettlementAccount.objects.get(merchant=merchant).account_last4 == "3445"
    assert sorted(ApiKey.objects.filter(merchant=merchant).values_list("mode", flat=True)) == ["live", "test"]
    (email,) = mail.outbox  # the keys go to the contact, by one-time links
    assert email.to == ["owner@example.com"]
    raw_keys = sorted(collect_keys(email.body))
    assert [raw[:8] for raw in raw_keys] == ["sk_live_", "sk_test_"]
    for raw_key, livemode in zip(raw_keys, (True, False), strict=True):
        (store,) = Api(raw_key).get("stores")[1]["data"]
        assert (store["name"], store["livemode"]) == ("五一路店", livemode)
    application.refresh_from_db()
    assert (application.status, application.merchant, application.reviewed_by) == ("approved", merchant, operator)
    assert AuditLog.objects.filter(action="merchant_application.approve", actor_id=operator.pk).count() == 1
    with pytest.raises(Conflict):
        services.merchant_application_approve(application=application, actor=operator)


def test_only_the_sponsor_banks_operators_decide() -> None:
    application = make_application()
    MerchantApplication.objects.filter(pk=application.pk).update(risk_grade="low")
    stranger = operator_of(MemberBankFactory())
    with pytest.raises(PermissionDenied):
        services.merchant_application_approve(application=application, actor=stranger)
    with pytest.raises(PermissionDenied):
        services.merchant_application_reject(application=application, actor=stranger)
    assert MerchantApplication.objects.get().status == "submitted"


def test_admin_approve_action_sends_the_keys_to_the_contact_never_to_the_operator(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    application = make_application()
    MerchantApplication.objects.filter(pk=application.pk).update(risk_grade="medium")
    client.force_login(operator_of(application.sponsor_bank))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/merchants/merchantapplication/",
            {"action": "approve", "_selected_action": [application.pk]},
            follow=True,
        )
    assert response.status_code == 200
    approved = MerchantApplication.objects.get()
    assert approved.status == "approved"
    assert Merchant.objects.get(code=f"MA{approved.pk:06d}").risk_grade == "medium"  # its settlement reserve's grade
    (email,) = mail.outbox
    assert email.to == ["owner@example.com"]
    text = response.content.decode()
    shown = " ".join(str(message) for message in response.context["messages"])
    prefixes = sorted(ApiKey.objects.values_list("prefix", flat=True))
    assert all(f"{prefix}…" in shown for prefix in prefixes)
    assert "o****@example.com" in shown
    assert "owner@example.com" not in text
    raw_keys = collect_keys(email.body)
    assert len(raw_keys) == 2
    for raw_key in raw_keys:
        assert raw_key not in text
        assert raw_key[len(prefixes[0]) :] not in text


def test_settlement_change_needs_a_second_operator() -> None:
    application = make_application()
    MerchantApplication.objects.filter(pk=application.pk).update(risk_grade="low")
    first = operator_of(application.sponsor_bank)
    second = operator_of(application.sponsor_bank)
    merchant = services.merchant_application_approve(application=application, actor=first).merchant
    with pytest.raises(ValidationFailed):
        services.settlement_change_request(
            merchant=merchant, account_name="Other Co", bank_name="B", account_number="62220200009999",
            reason="moved banks", actor=first,
        )  # fmt: skip
    with pytest.raises(ValidationFailed):  # a reason is required
        services.settlement_change_request(
            merchant=merchant, account_name="福州示例餐饮有限公司", bank_name="New Bank",
            account_number="62220200009999", reason=" ", actor=first,
        )  # fmt: skip
    change = services.settlement_change_request(
        merchant=merchant, account_name="福州示例餐饮有限公司", bank_name="New Bank", account_number="62220200009999",
        reason="moved banks", actor=first,
    )  # fmt: skip
    assert (change.kind, change.bank_id, change.maker) == (
        services.SETTLEMENT_ACCOUNT_CHANGE, merchant.sponsor_bank_id, first,
    )  # fmt: skip
    assert "62220200009999" not in str(change.payload)  # the number is kept encrypted
    assert change.payload["account_last4"] == "9999"
    assert SettlementAccount.objects.get(merchant=merchant).account_last4 == "3445"  # not yet
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=change.pk, checker=first)
    outsider = operator_of(MemberBankFactory())
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=change.pk, checker=outsider)
    approval_approve(request_id=change.pk, checker=second)
    account = SettlementAccount.objects.get(merchant=merchant)
    assert (account.bank_name, account.account_last4) == ("New Bank", "9999")
    assert decrypt(account.account_encrypted) == "62220200009999"
    with pytest.raises(Conflict):
        approval_approve(request_id=change.pk, checker=second)
    assert AuditLog.objects.filter(action="settlement_account.change_approve", actor_id=second.pk).count() == 1
    assert AuditLog.objects.filter(action="approval.request", actor_id=first.pk).count() == 1


def test_admin_settlement_change_request_and_approval(client: Any) -> None:
    application = make_application()
    MerchantApplication.objects.filter(pk=application.pk).update(risk_grade="low")
    first, second = operator_of(application.sponsor_bank), operator_of(application.sponsor_bank)
    merchant = services.merchant_application_approve(application=application, actor=first).merchant
    client.force_login(first)
    changelist = client.get("/admin/merchants/settlementaccount/")
    page = "/admin/merchants/settlementaccount/request-change/"
    assert page.encode() in changelist.content
    form = {"merchant": merchant.pk, "bank_name": "New Bank", "account_number": "62220200008888", "reason": "moved"}
    refused = client.post(page, {**form, "account_name": "Other Co"})
    assert refused.status_code == 200  # the form again, with the error
    assert refused.context["form"].errors
    assert not ApprovalRequest.objects.exists()
    created = client.post(page, {**form, "account_name": merchant.legal_name})
    assert created.status_code == 302
    change = ApprovalRequest.objects.get()
    assert (change.maker, change.status, change.reason) == (first, "pending", "moved")
    decide = f"/admin/core/approvalrequest/{change.pk}/change/"
    client.post(decide, {"decision": "approve", "reason": ""})
    assert ApprovalRequest.objects.get().status == "pending"  # the requester cannot approve
    client.force_login(second)
    assert client.post(decide, {"decision": "approve", "reason": ""}).status_code == 302
    assert ApprovalRequest.objects.get().status == "approved"
    assert SettlementAccount.objects.get(merchant=merchant).account_last4 == "8888"
