"""What the merchant services share: public ids, and who decides for a sponsor bank (its operators only)."""

from __future__ import annotations

import secrets
from typing import Any

from core.errors import PermissionDenied


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


def require_operator_of(actor: Any, bank_id: int) -> None:
    if actor is None:
        return
    from core.scoping import operator_scope

    if not operator_scope(actor).can_write(bank_id):
        raise PermissionDenied("Only the sponsor bank's operators may decide this.")
