"""Demo data for the merchant API: a first store (live, and its sandbox twin) and a test key for every demo merchant
(the key is printed once)."""

from __future__ import annotations

from typing import Any

from .models import ApiKey, Merchant, Mode, Store
from .services import api_key_create, store_create


def seed_merchant_api(ctx: Any) -> None:
    for merchant in Merchant.objects.filter(status=Merchant.Status.ACTIVE).order_by("code"):
        for livemode in (True, False):
            if not Store.objects.filter(merchant=merchant, livemode=livemode).exists():
                store_create(merchant=merchant, code="S001", name=merchant.display_name, city="", livemode=livemode)
        if not ApiKey.objects.filter(merchant=merchant, mode=Mode.TEST, revoked_at__isnull=True).exists():
            issued = api_key_create(merchant=merchant, mode=Mode.TEST)
            ctx.api_keys.append((merchant.code, issued.raw_key))
