"""Merchants: writes."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.audit import audit_record, snapshot
from core.errors import Conflict, ValidationFailed
from members.models import MemberBank

from .models import Merchant


@transaction.atomic
def merchant_create(
    *,
    code: str,
    legal_name: str,
    display_name: str,
    sponsor_bank: MemberBank,
    category_code: str = "5999",
    spend_category: str = "other",
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
    )
    merchant.full_clean()
    merchant.save()
    audit_record(actor=actor, action="merchant.create", obj=merchant, after=snapshot(merchant), bank_id=sponsor_bank.pk)
    return merchant
