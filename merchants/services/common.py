"""What the merchant services share: public ids, and who decides for a sponsor bank (its operators only)."""

from __future__ import annotations

from typing import Any

from core.errors import PermissionDenied
from core.ids import new_public_id

__all__ = ["new_public_id", "require_operator_of"]


def require_operator_of(actor: Any, bank_id: int) -> None:
    if actor is None:
        return
    from core.scoping import operator_scope

    if not operator_scope(actor).can_write(bank_id):
        raise PermissionDenied("Only the sponsor bank's operators may decide this.")
