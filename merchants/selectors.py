"""Merchants: reads."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.db.models.functions import Now

from core.errors import NotFound
from core.ids import MILLISECOND, public_id_time
from members.models import MemberBank

from .models import ApiKey, Event, Merchant, Store, WebhookEndpoint


def merchant_get(*, merchant_id: int) -> Merchant:
    try:
        return Merchant.objects.select_related("sponsor_bank").get(pk=merchant_id)
    except Merchant.DoesNotExist:
        raise NotFound("No such merchant.", param="merchant") from None


def api_key_by_hash(*, key_hash: str) -> ApiKey | None:
    """The usable key with this hash: not revoked, not expired (by the database's clock), its merchant not closed."""
    return (
        ApiKey.objects.select_related("merchant")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=Now()))
        .exclude(merchant__status=Merchant.Status.CLOSED)
        .order_by("pk")
        .first()
    )


# The merchant API's reads take the calling key's mode: another mode's object is not found, like another merchant's.


def store_list(*, merchant: Merchant, livemode: bool) -> QuerySet[Store]:
    return Store.objects.filter(merchant=merchant, livemode=livemode)


def webhook_endpoint_get(*, merchant: Merchant, livemode: bool, endpoint_id: int) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.select_related("merchant").get(
            pk=endpoint_id, merchant=merchant, livemode=livemode
        )
    except WebhookEndpoint.DoesNotExist:
        raise NotFound("No such webhook endpoint.", param="id") from None


def webhook_endpoint_list(*, merchant: Merchant, livemode: bool) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant=merchant, livemode=livemode)


def event_list(*, merchant: Merchant, livemode: bool, type: str | None = None) -> QuerySet[Event]:
    """Events are partitioned by month on `created_at`: a caller that bounds `created_at` (the API's `created[gte]`,
    `created[lte]`) reads those months only; a list without a window reads every month's (merchant, livemode, -id)
    index, newest first."""
    events = Event.objects.filter(merchant=merchant, livemode=livemode)
    return events.filter(type=type) if type else events


def event_get(*, merchant: Merchant, livemode: bool, event_id: str) -> Event:
    """By public id, which carries the event's time to the millisecond (core.ids): the lookup reads that month's
    partition only. An id made before events had timed ids holds no time: it probes every month's
    (public_id, created_at) index, one index lookup each."""
    events = Event.objects.filter(public_id=event_id, merchant=merchant, livemode=livemode)
    made = public_id_time(event_id, "evt")
    if made is not None:
        events = events.filter(created_at__gte=made, created_at__lt=made + MILLISECOND)
    try:
        return events.get()
    except Event.DoesNotExist:
        raise NotFound("No such event.", param="id") from None


def acquiring_banks() -> QuerySet[MemberBank]:
    """Members that may sponsor merchants: active, with an acquiring licence."""
    return MemberBank.objects.filter(acquiring_licence=True, status=MemberBank.Status.ACTIVE).order_by("code")
