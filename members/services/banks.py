"""The alliance's members and what they issue: banks, their points programme (one a bank), card products, BIN ranges,
and the banks' operators. Every change is audited under its bank."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.errors import Conflict, ValidationFailed

from ..models import BankOperator, BinRange, CardProduct, MemberBank, PointsProgram
from .common import Actor


@transaction.atomic
def bank_create(
    *,
    code: str,
    name_zh: str,
    name_en: str,
    kind: str,
    joined_on: dt.date,
    brand_colour: str = "#b3261e",
    issuing_licence: bool = True,
    acquiring_licence: bool = False,
    prepaid_licence: bool = False,
    actor: Actor = None,
) -> MemberBank:
    if MemberBank.objects.filter(code=code).exists():
        raise Conflict(_("A member bank with code %(code)s exists.") % {"code": code}, code="bank_exists")
    bank = MemberBank(
        code=code,
        name_zh=name_zh,
        name_en=name_en,
        kind=kind,
        joined_on=joined_on,
        brand_colour=brand_colour,
        issuing_licence=issuing_licence,
        acquiring_licence=acquiring_licence,
        prepaid_licence=prepaid_licence,
    )
    bank.full_clean()
    bank.save()
    audit_record(actor=actor, action="members.bank_create", obj=bank, after=snapshot(bank), bank_id=bank.pk)
    return bank


@transaction.atomic
def program_create(
    *,
    bank: MemberBank,
    unit_code: str,
    name: str,
    point_value_cny: Decimal,
    name_en: str = "",
    expiry_policy: str = PointsProgram.ExpiryPolicy.END_OF_YEAR,
    expiry_period: int = 2,
    actor: Actor = None,
) -> PointsProgram:
    if PointsProgram.objects.filter(bank=bank).exists():
        raise Conflict(_("This bank already has a points program."), code="program_exists")
    program = PointsProgram(
        bank=bank,
        unit_code=unit_code,
        name=name,
        name_en=name_en,
        point_value_cny=point_value_cny,
        expiry_policy=expiry_policy,
        expiry_period=expiry_period,
    )
    program.full_clean()
    program.save()
    audit_record(actor=actor, action="members.program_create", obj=program, after=snapshot(program), bank_id=bank.pk)
    return program


@transaction.atomic
def product_create(
    *,
    bank: MemberBank,
    code: str,
    name: str,
    kind: str,
    name_en: str = "",
    tier: str = CardProduct.Tier.STANDARD,
    earning_rates: dict[str, str] | None = None,
    cashback_rates: dict[str, str] | None = None,
    included_benefits: str = "",
    feature_tags: list[str] | None = None,
    apply_url: str = "",
    actor: Actor = None,
) -> CardProduct:
    for rates in (earning_rates or {}, cashback_rates or {}):
        for category, rate in rates.items():
            if Decimal(rate) < 0:
                raise ValidationFailed(_("Rates cannot be negative."), param=category)
    product = CardProduct(
        bank=bank,
        code=code,
        name=name,
        name_en=name_en,
        kind=kind,
        tier=tier,
        earning_rates=earning_rates or {},
        cashback_rates=cashback_rates or {},
        included_benefits=included_benefits,
        feature_tags=feature_tags or [],
        apply_url=apply_url,
    )
    product.full_clean()
    product.save()
    audit_record(actor=actor, action="members.product_create", obj=product, after=snapshot(product), bank_id=bank.pk)
    return product


@transaction.atomic
def bin_range_create(*, product: CardProduct, prefix: str, card_length: int = 16, actor: Actor = None) -> BinRange:
    bin_range = BinRange(prefix=prefix, bank=product.bank, product=product, card_length=card_length)
    bin_range.full_clean()
    bin_range.save()
    audit_record(
        actor=actor, action="members.bin_create", obj=bin_range, after=snapshot(bin_range), bank_id=product.bank_id
    )
    return bin_range


@transaction.atomic
def bank_operator_add(*, user: AbstractBaseUser, bank: MemberBank, role: str, actor: Actor = None) -> BankOperator:
    from django.contrib.auth.models import Group

    from core.scoping import BANK_AUDITORS, BANK_OPERATORS

    operator, _created = BankOperator.objects.update_or_create(user_id=user.pk, bank=bank, defaults={"role": role})
    group = BANK_OPERATORS if role == BankOperator.Role.OPERATOR else BANK_AUDITORS
    user.groups.add(Group.objects.get(name=group))  # type: ignore[attr-defined]
    if not getattr(user, "is_staff", False):
        get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    audit_record(actor=actor, action="members.operator_add", obj=operator, after=snapshot(operator), bank_id=bank.pk)
    return operator
