"""A merchant's stores, each of one mode (a store code is unique within the merchant and mode)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from core.audit import audit_record, snapshot
from core.errors import Conflict, ValidationFailed

from ..models import Merchant, Store


@transaction.atomic
def store_create(
    *, merchant: Merchant, code: str, name: str, city: str = "", livemode: bool = True, actor: Any = None
) -> Store:
    if Store.objects.filter(merchant=merchant, livemode=livemode, code=code).exists():
        raise Conflict(f"A store with code {code} exists.", code="store_exists", param="code")
    store = Store(merchant=merchant, code=code, name=name, city=city, livemode=livemode)
    try:
        store.full_clean()
    except DjangoValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ValidationFailed(messages[0], param=field) from None
    store.save()
    audit_record(actor=actor, action="store.create", obj=store, after=snapshot(store), bank_id=merchant.sponsor_bank_id)
    return store
