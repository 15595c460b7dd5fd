"""Members: reads."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from core.scoping import BankRoles

from .models import BankOperator


def bank_roles_for_user(user: AbstractBaseUser) -> BankRoles:
    """The banks a staff user operates (read-write) and audits (read-only); used by the scoped admin."""
    operated: set[int] = set()
    audited: set[int] = set()
    for bank_id, role in BankOperator.objects.filter(user_id=user.pk).values_list("bank_id", "role"):
        (operated if role == BankOperator.Role.OPERATOR else audited).add(bank_id)
    return BankRoles(frozenset(operated), frozenset(audited))
