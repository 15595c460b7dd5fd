"""A merchant's settlement account: in its own legal name, its number kept encrypted (the last four digits shown).

A change is requested by an operator of the sponsor bank and applied when another approves it (four eyes).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.crypto import encrypt
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.text import ascii_digits

from ..models import Merchant, SettlementAccount, SettlementAccountChange
from .common import require_operator_of


def same_name(account_name: str, legal_name: str) -> bool:
    """Names compared the way a bank would: full-width brackets and spacing do not make another holder."""

    def normal(name: str) -> str:
        return "".join(name.replace("（", "(").replace("）", ")").split()).casefold()

    return normal(account_name) == normal(legal_name)


def account_digits(account_number: str) -> str:
    digits = "".join(account_number.split())
    if not ascii_digits(digits) or not 8 <= len(digits) <= 32:
        raise ValidationFailed(
            "The settlement account number is 8 to 32 digits.", code="invalid_account", param="account_number"
        )
    return digits


def settlement_account_check(*, merchant: Merchant, account_name: str, account_number: str) -> str:
    """The account's digits, if it may be the merchant's settlement account (its own name, a plausible number)."""
    if not same_name(account_name, merchant.legal_name):
        raise ValidationFailed(
            "The settlement account must be in the merchant's own legal name.",
            code="settlement_account_not_own",
            param="account_name",
        )
    return account_digits(account_number)


@transaction.atomic
def settlement_change_request(
    *, merchant: Merchant, account_name: str, bank_name: str, account_number: str, actor: Any
) -> SettlementAccountChange:
    require_operator_of(actor, merchant.sponsor_bank_id)
    digits = settlement_account_check(merchant=merchant, account_name=account_name, account_number=account_number)
    change = SettlementAccountChange.objects.create(
        merchant=merchant,
        account_name=account_name.strip(),
        bank_name=bank_name.strip(),
        account_encrypted=encrypt(digits),
        account_last4=digits[-4:],
        requested_by=actor,
    )
    audit_record(
        actor=actor,
        action="settlement_account.change_request",
        obj=change,
        after={"account_last4": change.account_last4, "bank_name": change.bank_name},
        bank_id=merchant.sponsor_bank_id,
    )
    return change


@transaction.atomic
def settlement_change_approve(*, change: SettlementAccountChange, actor: Any) -> SettlementAccount:
    """Applies a requested change; the approver must be another operator of the sponsor bank (four eyes)."""
    locked = SettlementAccountChange.objects.select_for_update().select_related("merchant").get(pk=change.pk)
    require_operator_of(actor, locked.merchant.sponsor_bank_id)
    if locked.status != SettlementAccountChange.Status.PENDING:
        raise Conflict(f"This change is {locked.status}.", code="change_decided")
    if actor is None or actor.pk == locked.requested_by_id:
        raise PermissionDenied("A second operator must approve a settlement account change.", code="four_eyes")
    previous = SettlementAccount.objects.filter(merchant=locked.merchant).first()
    before = {"bank_name": previous.bank_name, "account_last4": previous.account_last4} if previous else None
    account, _created = SettlementAccount.objects.update_or_create(
        merchant=locked.merchant,
        defaults={
            "account_name": locked.account_name,
            "bank_name": locked.bank_name,
            "account_encrypted": locked.account_encrypted,
            "account_last4": locked.account_last4,
        },
    )
    locked.status = SettlementAccountChange.Status.APPROVED
    locked.decided_by = actor
    locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(
        actor=actor,
        action="settlement_account.change_approve",
        obj=locked,
        before=before,
        after={"bank_name": account.bank_name, "account_last4": account.account_last4},
        bank_id=locked.merchant.sponsor_bank_id,
    )
    return account
