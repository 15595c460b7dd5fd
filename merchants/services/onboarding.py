"""Onboarding: a merchant under its sponsor bank, created directly or from an application its operators approve.

A sponsor holds an acquiring licence and is an active member (no 二清: the funds go through it). An approved
application becomes the merchant with its settlement account, its first store (live, and its twin in test mode) and a
test and a live key, sent to the application's contact by one-time links (never shown to the operator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.crypto import encrypt
from core.errors import Conflict, ValidationFailed
from core.personal import phone_digits
from members.models import MemberBank

from ..models import Merchant, MerchantApplication, Mode, RiskGrade, SettlementAccount, Store
from ..uscc import uscc_valid
from .api_keys import api_key_create
from .common import require_operator_of
from .key_deliveries import KeysSent, key_deliveries_send
from .settlement import account_digits, same_name
from .stores import store_create

_CONTACT_PHONE = re.compile(r"\+?[0-9 -]{6,20}")


def _contact_checked(name: str, phone: str, email: str) -> tuple[str, str, str]:
    """The contact person's details, checked here: they are stored encrypted, so no column's length or type checks
    them any more."""
    name, phone, email = name.strip(), phone.strip(), email.strip()
    if not name or len(name) > 100:
        raise ValidationFailed(_("Enter the contact person's name (at most 100 characters)."), param="contact_name")
    if not _CONTACT_PHONE.fullmatch(phone) or len(phone_digits(phone)) < 6:
        raise ValidationFailed(_("Enter a phone number (6 to 20 digits)."), param="contact_phone")
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationFailed(_("Enter a valid email address."), param="contact_email") from None
    return name, phone, email


@transaction.atomic
def merchant_create(
    *,
    code: str,
    legal_name: str,
    display_name: str,
    sponsor_bank: MemberBank,
    category_code: str = "5999",
    spend_category: str = "other",
    risk_grade: str = RiskGrade.LOW,
    actor: Any = None,
) -> Merchant:
    """Creates an active merchant under a sponsor that holds an acquiring licence (no 二清: funds go through it)."""
    if not sponsor_bank.acquiring_licence or sponsor_bank.status != MemberBank.Status.ACTIVE:
        raise ValidationFailed("The sponsor must be an active member with an acquiring licence.", param="sponsor_bank")
    if Merchant.objects.filter(code=code).exists():
        raise Conflict(f"A merchant with code {code} exists.", code="merchant_exists", param="code")
    merchant = Merchant(
        code=code,
        legal_name=legal_name,
        display_name=display_name,
        sponsor_bank=sponsor_bank,
        category_code=category_code,
        spend_category=spend_category,
        risk_grade=risk_grade,
    )
    merchant.full_clean()
    merchant.save()
    audit_record(actor=actor, action="merchant.create", obj=merchant, after=snapshot(merchant), bank_id=sponsor_bank.pk)
    return merchant


@transaction.atomic
def merchant_application_submit(
    *,
    legal_name: str,
    display_name: str,
    credit_code: str,
    category_code: str,
    spend_category: str,
    sponsor_bank: MemberBank,
    settlement_account_name: str,
    settlement_bank_name: str,
    settlement_account_number: str,
    contact_name: str,
    contact_phone: str,
    contact_email: str,
    store_name: str,
    store_city: str,
) -> MerchantApplication:
    credit_code = credit_code.strip().upper()
    if not uscc_valid(credit_code):
        raise ValidationFailed(
            "This is not a valid unified social credit code (GB 32100-2015 check character).",
            code="invalid_credit_code",
            param="credit_code",
        )
    if not sponsor_bank.acquiring_licence or sponsor_bank.status != MemberBank.Status.ACTIVE:
        raise ValidationFailed("The sponsor must be an active member with an acquiring licence.", param="sponsor_bank")
    if not same_name(settlement_account_name, legal_name):
        raise ValidationFailed(
            "The settlement account must be in the merchant's own legal name.",
            code="settlement_account_not_own",
            param="settlement_account_name",
        )
    digits = account_digits(settlement_account_number)
    contact_name, contact_phone, contact_email = _contact_checked(contact_name, contact_phone, contact_email)
    if MerchantApplication.objects.filter(
        credit_code=credit_code, status__in=[MerchantApplication.Status.SUBMITTED, MerchantApplication.Status.APPROVED]
    ).exists():
        raise Conflict(
            "An application for this credit code is open or approved.", code="application_exists", param="credit_code"
        )
    application = MerchantApplication(
        legal_name=legal_name.strip(),
        display_name=display_name.strip(),
        credit_code=credit_code,
        category_code=category_code,
        spend_category=spend_category,
        sponsor_bank=sponsor_bank,
        settlement_account_name=settlement_account_name.strip(),
        settlement_bank_name=settlement_bank_name.strip(),
        settlement_account_encrypted=encrypt(digits),
        settlement_account_last4=digits[-4:],
        store_name=store_name.strip(),
        store_city=store_city.strip(),
    )
    # Personal data: each property stores it encrypted, with its masked form and hash.
    application.contact_name = contact_name
    application.contact_phone = contact_phone
    application.contact_email = contact_email
    try:
        application.full_clean()
    except DjangoValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ValidationFailed(messages[0], param=field) from None
    application.save()
    audit_record(
        actor=None,
        action="merchant_application.submit",
        obj=application,
        after={"legal_name": application.legal_name, "credit_code": credit_code},
        bank_id=sponsor_bank.pk,
    )
    return application


@dataclass(frozen=True)
class ApprovedApplication:
    merchant: Merchant
    store: Store
    keys: KeysSent  # the test and the live key's one-time links, emailed to the contact


@transaction.atomic
def merchant_application_approve(*, application: MerchantApplication, actor: Any) -> ApprovedApplication:
    """Creates the merchant, its settlement account, its first store (live, and its twin in test mode) and a test and
    a live key, emailed to the application's contact by one-time links after the commit."""
    locked = MerchantApplication.objects.select_for_update().select_related("sponsor_bank").get(pk=application.pk)
    require_operator_of(actor, locked.sponsor_bank_id)
    if locked.status != MerchantApplication.Status.SUBMITTED:
        raise Conflict(f"This application is {locked.status}.", code="application_decided")
    if not locked.risk_grade:
        raise ValidationFailed("Grade the risk before approving.", code="risk_grade_required", param="risk_grade")
    merchant = merchant_create(
        code=f"MA{locked.pk:06d}",
        legal_name=locked.legal_name,
        display_name=locked.display_name,
        sponsor_bank=locked.sponsor_bank,
        category_code=locked.category_code,
        spend_category=locked.spend_category,
        risk_grade=locked.risk_grade,  # sets the merchant's settlement reserve
        actor=actor,
    )
    SettlementAccount.objects.create(
        merchant=merchant,
        account_name=locked.settlement_account_name,
        bank_name=locked.settlement_bank_name,
        account_encrypted=locked.settlement_account_encrypted,
        account_last4=locked.settlement_account_last4,
    )
    store = store_create(merchant=merchant, code="S001", name=locked.store_name, city=locked.store_city, actor=actor)
    # Its twin in test mode, so the sandbox starts with the same first store the test key can see.
    store_create(
        merchant=merchant, code="S001", name=locked.store_name, city=locked.store_city, livemode=False, actor=actor
    )
    test_key = api_key_create(merchant=merchant, mode=Mode.TEST, actor=actor)
    live_key = api_key_create(merchant=merchant, mode=Mode.LIVE, actor=actor)
    locked.status = MerchantApplication.Status.APPROVED
    locked.merchant = merchant
    locked.reviewed_by = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "merchant", "reviewed_by", "reviewed_at"])
    audit_record(
        actor=actor,
        action="merchant_application.approve",
        obj=locked,
        after={"merchant": merchant.code, "risk_grade": locked.risk_grade},
        bank_id=locked.sponsor_bank_id,
    )
    keys = key_deliveries_send(
        merchant=merchant, issued=[test_key, live_key], contact_email=locked.contact_email, actor=actor
    )
    return ApprovedApplication(merchant=merchant, store=store, keys=keys)


@transaction.atomic
def merchant_application_reject(*, application: MerchantApplication, actor: Any, note: str = "") -> None:
    locked = MerchantApplication.objects.select_for_update().get(pk=application.pk)
    require_operator_of(actor, locked.sponsor_bank_id)
    if locked.status != MerchantApplication.Status.SUBMITTED:
        raise Conflict(f"This application is {locked.status}.", code="application_decided")
    locked.status = MerchantApplication.Status.REJECTED
    locked.review_note = note[:500]
    locked.reviewed_by = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "review_note", "reviewed_by", "reviewed_at"])
    audit_record(
        actor=actor, action="merchant_application.reject", obj=locked, reason=note, bank_id=locked.sponsor_bank_id
    )
