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


# --- approval requests about one merchant (an unfreeze, a settlement account change) ------------------------------


def merchant_request_bank(payload: dict[str, Any]) -> int | None:
    """The bank whose operator checks a request about the payload's merchant: its sponsor bank."""
    from ..models import Merchant

    return Merchant.objects.values_list("sponsor_bank_id", flat=True).get(pk=payload["merchant_id"])


def merchant_request_line(payload: dict[str, Any]) -> tuple[str, str]:
    """The payload's merchant as the first line of a request's description (its id when the merchant is gone)."""
    from django.utils.translation import gettext as _

    from core.text import id_or_none

    from ..models import Merchant

    pk = id_or_none(str(payload.get("merchant_id")))
    merchant = None if pk is None else Merchant.objects.filter(pk=pk).first()
    return _("merchant"), str(merchant) if merchant is not None else f"#{payload.get('merchant_id')}"
