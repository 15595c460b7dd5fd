"""A merchant's settlement account: in its own legal name, its number kept encrypted (the last four digits shown).

A change is requested by an operator of the sponsor bank and applied when another (or an alliance operator) approves
it, through the maker-checker mechanism (`core.approvals`, kind "merchants.settlement_account_change"): the request
waits in the approval queue, its account number encrypted, and the approval applies it in its own transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.approvals import ApprovalKind, approval_request
from core.audit import audit_record
from core.crypto import decrypt, encrypt
from core.errors import NotFound, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest
from core.text import ascii_digits, id_or_none

from ..models import Merchant, SettlementAccount
from .common import merchant_request_bank, merchant_request_line, require_operator_of

SETTLEMENT_ACCOUNT_CHANGE = "merchants.settlement_account_change"
ACCOUNT_CHANGE_PERMISSION = "merchants.change_account"


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


def _merchant(merchant_id: Any) -> Merchant:
    pk = id_or_none(str(merchant_id))
    merchant = None if pk is None else Merchant.objects.filter(pk=pk).first()
    if merchant is None:
        raise NotFound(_("No such merchant."), param="merchant")
    return merchant


def settlement_change_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a change: the merchant and the new account, its number encrypted (never in plain text). Run
    when requested and again when approved: the account must still be in the merchant's own legal name."""
    merchant = _merchant(payload.get("merchant_id"))
    try:
        number = decrypt(str(payload.get("account_encrypted") or ""))
    except ValueError:  # not a number this key encrypted
        raise ValidationFailed(
            _("The settlement account number cannot be read: request the change again."),
            code="invalid_account",
            param="account_number",
        ) from None
    account_name, bank_name = (
        str(payload.get("account_name") or "").strip(),
        str(payload.get("bank_name") or "").strip(),
    )
    digits = settlement_account_check(merchant=merchant, account_name=account_name, account_number=number)
    if not bank_name:
        raise ValidationFailed(_("Name the account's bank."), code="bank_name_required", param="bank_name")
    return {
        "merchant_id": merchant.pk,
        "account_name": account_name,
        "bank_name": bank_name,
        "account_encrypted": str(payload["account_encrypted"]),
        "account_last4": digits[-4:],
    }


def settlement_change_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        merchant_request_line(payload),
        (_("account name"), str(payload.get("account_name", ""))),
        (_("bank"), str(payload.get("bank_name", ""))),
        (_("account, last four"), f"****{payload.get('account_last4', '')}"),
    ]


@transaction.atomic
def settlement_change_request(
    *, merchant: Merchant, account_name: str, bank_name: str, account_number: str, reason: str, actor: Any
) -> ApprovalRequest:
    """Asks for the merchant to be paid into another account; nothing changes until a second operator approves it in
    the approval queue (`core.approvals.approval_approve`)."""
    if actor is None or not getattr(actor, "pk", None):
        raise PermissionDenied(_("An operator asks for a settlement account change."), code="operator_required")
    require_operator_of(actor, merchant.sponsor_bank_id)
    if not actor.has_perm(ACCOUNT_CHANGE_PERMISSION):
        raise PermissionDenied(_("Your role may not ask for a settlement account change."), code="not_allowed")
    digits = settlement_account_check(merchant=merchant, account_name=account_name, account_number=account_number)
    payload = {
        "merchant_id": merchant.pk,
        "account_name": account_name,
        "bank_name": bank_name,
        "account_encrypted": encrypt(digits),
    }
    return approval_request(kind=SETTLEMENT_ACCOUNT_CHANGE, payload=payload, reason=reason, maker=actor)


def settlement_change_apply(
    payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser
) -> SettlementAccount:
    """Applies an approved change (the kind's `apply`, inside the approval's transaction): the merchant is paid into
    the new account from now on."""
    merchant = Merchant.objects.select_for_update().get(pk=payload["merchant_id"])
    require_operator_of(checker, merchant.sponsor_bank_id)
    previous = SettlementAccount.objects.filter(merchant=merchant).first()
    before = {"bank_name": previous.bank_name, "account_last4": previous.account_last4} if previous else None
    account, _created = SettlementAccount.objects.update_or_create(
        merchant=merchant,
        defaults={
            "account_name": payload["account_name"],
            "bank_name": payload["bank_name"],
            "account_encrypted": payload["account_encrypted"],
            "account_last4": payload["account_last4"],
        },
    )
    audit_record(
        actor=checker,
        action="settlement_account.change_approve",
        obj=account,
        before=before,
        after={"bank_name": account.bank_name, "account_last4": account.account_last4, "requested_by": maker.pk},
        bank_id=merchant.sponsor_bank_id,
    )
    return account


SETTLEMENT_ACCOUNT_CHANGE_KIND = ApprovalKind(
    code=SETTLEMENT_ACCOUNT_CHANGE,
    label=gettext_lazy("Change a merchant's settlement account"),
    permission=ACCOUNT_CHANGE_PERMISSION,
    validate=settlement_change_validate,
    bank_of=merchant_request_bank,
    apply=settlement_change_apply,
    describe=settlement_change_describe,
)
