"""Delivering a new API key to the merchant, never to an operator: a one-time link sent by email to the contact on
the merchant's application.

The link's token is kept only as a keyed hash and the key encrypted, until the merchant opens the link and asks for
it (a POST, so a link-preview bot that fetches the page does not use it up): then the key is shown once and wiped.
A link works once and for `KEY_DELIVERY_HOURS` (24 by default). The email leaves after the commit, outside the
transaction; if it cannot be sent, the delivery shows no "email sent" time and the operator rotates again.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.crypto import decrypt, encrypt, keyed_hash
from core.errors import Conflict, NotFound
from core.personal import mask_email

from ..models import ApiKey, KeyDelivery, Merchant, MerchantApplication
from .api_keys import IssuedKey, api_key_rotate

logger = logging.getLogger("merchants.services")

TOKEN_PURPOSE = "api-key-delivery"


def key_contact(merchant: Merchant) -> str | None:
    """The address a merchant's keys go to: the contact on its approved application, or None (a merchant created
    without one gets its keys from the `create_merchant_key` command at the alliance's own console)."""
    application = MerchantApplication.objects.filter(merchant=merchant).first()
    return application.contact_email if application is not None else None


def _token_hash(token: str) -> str:
    return keyed_hash(token, purpose=TOKEN_PURPOSE)


@dataclass(frozen=True)
class KeysSent:
    deliveries: list[KeyDelivery]
    sent_to: str  # masked

    @property
    def prefixes(self) -> str:
        return ", ".join(f"{delivery.api_key.prefix}…" for delivery in self.deliveries)


def key_deliveries_send(*, merchant: Merchant, issued: list[IssuedKey], contact_email: str, actor: Any) -> KeysSent:
    """Stores each new key encrypted behind a new one-time link and, after the commit, emails the links to
    `contact_email`. Call inside the transaction that issued the keys."""
    assert transaction.get_connection().in_atomic_block, "deliver keys in the transaction that issues them"
    expires_at = timezone.now() + timedelta(hours=settings.KEY_DELIVERY_HOURS)
    sent_to = mask_email(contact_email)
    links: list[tuple[ApiKey, str]] = []  # the keys' rows and their links: the raw keys stay out of the email
    deliveries: list[KeyDelivery] = []
    for key in issued:
        token = secrets.token_urlsafe(32)
        delivery = KeyDelivery.objects.create(
            merchant=merchant,
            api_key=key.api_key,
            token_hash=_token_hash(token),
            key_encrypted=encrypt(key.raw_key),
            sent_to=sent_to,
            created_by=actor if getattr(actor, "pk", None) is not None else None,
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="api_key.delivery_create",
            obj=delivery,
            after={"prefix": key.api_key.prefix, "sent_to": sent_to, "expires_at": expires_at.isoformat()},
            bank_id=merchant.sponsor_bank_id,
        )
        deliveries.append(delivery)
        links.append((key.api_key, settings.PUBLIC_BASE_URL.rstrip("/") + reverse("merchants:key", args=[token])))
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: _email_links(merchant.display_name, contact_email, links, expires_at, ids))
    return KeysSent(deliveries=deliveries, sent_to=sent_to)


@transaction.atomic
def api_key_rotate_and_deliver(*, api_key: ApiKey, actor: Any, overlap_hours: int = 24) -> KeysSent:
    """Rotates a key (the old one works `overlap_hours` more) and sends the new one to the merchant's contact by a
    one-time link. Refused, with nothing changed, for a merchant with no contact on file."""
    contact = key_contact(api_key.merchant)
    if not contact:
        raise Conflict(
            _("This merchant has no application contact to send a new key to; the alliance issues its keys."),
            code="no_key_contact",
        )
    issued = api_key_rotate(api_key=api_key, overlap_hours=overlap_hours, actor=actor)
    return key_deliveries_send(merchant=issued.api_key.merchant, issued=[issued], contact_email=contact, actor=actor)


def _email_links(
    merchant_name: str, contact_email: str, links: list[tuple[ApiKey, str]], expires_at: Any, ids: list[int]
) -> None:
    lines = [
        _("Your new Mengka API keys for %(merchant)s are ready to collect.") % {"merchant": merchant_name},
        _("Each link works once, until %(expires)s; the key is shown once, then no longer kept.")
        % {"expires": timezone.localtime(expires_at).strftime("%Y-%m-%d %H:%M")},
        "",
        *[
            _("%(mode)s key %(prefix)s…: %(link)s")
            % {"mode": key.get_mode_display(), "prefix": key.prefix, "link": link}
            for key, link in links
        ],
    ]
    try:
        send_mail(
            subject=_("Your Mengka API keys"),
            message="\n".join(lines),
            from_email=None,
            recipient_list=[contact_email],
        )
    except Exception:  # an outside call after the commit: the deliveries stay unsent, the operator rotates again
        logger.exception("could not email API key deliveries %s", ids)
        return
    KeyDelivery.objects.filter(pk__in=ids).update(sent_at=timezone.now())


def _delivery_for(token: str) -> KeyDelivery:
    delivery = KeyDelivery.objects.select_related("api_key", "merchant").filter(token_hash=_token_hash(token)).first()
    if delivery is None:
        raise NotFound(_("This link is not valid."), code="key_delivery_missing", param="token")
    return delivery


def _refusal(delivery: KeyDelivery) -> Conflict | None:
    if delivery.collected_at is not None:
        return Conflict(
            _("This link was used already: a key is shown only once. Ask your sponsor bank for a new key."),
            code="key_delivery_used",
        )
    if delivery.expires_at <= timezone.now():
        return Conflict(_("This link has expired. Ask your sponsor bank for a new key."), code="key_delivery_expired")
    return None


def key_delivery_check(*, token: str) -> KeyDelivery:
    """The delivery a link names, if it can still be collected; writes nothing (opening the page uses nothing up)."""
    delivery = _delivery_for(token)
    refusal = _refusal(delivery)
    if refusal is not None:
        raise refusal
    return delivery


@dataclass(frozen=True)
class CollectedKey:
    merchant: Merchant
    prefix: str
    mode: str
    raw_key: str  # shown once, on the merchant's page


def key_delivery_collect(*, token: str) -> CollectedKey:
    """Reveals the key once: decrypted and wiped from the delivery in one transaction, audited. A used or expired
    link is refused (and an expired link's key wiped)."""
    with transaction.atomic():
        found = _delivery_for(token)
        delivery = KeyDelivery.objects.select_for_update().select_related("api_key", "merchant").get(pk=found.pk)
        refusal = _refusal(delivery)
        if refusal is not None:
            if delivery.key_encrypted:
                delivery.key_encrypted = ""
                delivery.save(update_fields=["key_encrypted"])
        else:
            raw_key = decrypt(delivery.key_encrypted)
            delivery.key_encrypted, delivery.collected_at = "", timezone.now()
            delivery.save(update_fields=["key_encrypted", "collected_at"])
            audit_record(
                actor=None,
                action="api_key.delivery_collect",
                obj=delivery,
                after={"prefix": delivery.api_key.prefix},
                bank_id=delivery.merchant.sponsor_bank_id,
            )
    if refusal is not None:
        raise refusal
    return CollectedKey(
        merchant=delivery.merchant, prefix=delivery.api_key.prefix, mode=delivery.api_key.mode, raw_key=raw_key
    )
