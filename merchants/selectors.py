"""Merchants: reads."""

from __future__ import annotations

from core.errors import NotFound

from .models import Merchant


def merchant_get(*, merchant_id: int) -> Merchant:
    try:
        return Merchant.objects.select_related("sponsor_bank").get(pk=merchant_id)
    except Merchant.DoesNotExist:
        raise NotFound("No such merchant.", param="merchant") from None
