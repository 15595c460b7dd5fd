"""Consents: the published texts, versioned per purpose, and cardholders' grants and withdrawals, each an event.

A grant is given under the purpose's current text; grants and withdrawals are honoured at once. A withdrawal also
forgets, in its own transaction, what was derived under the purpose: for personalised offers the cardholder's segment
tags, and whatever an app to the right of members keeps (registered with `consent_withdrawal_hook`, since members
cannot call those apps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.errors import ValidationFailed

from ..models import Cardholder, Consent, ConsentEvent, ConsentPurpose, ConsentText
from .common import Actor

# purpose -> functions that forget, for some cardholders, what their app derived under the purpose.
WithdrawalHook = Callable[[Sequence[int]], None]
_withdrawal_hooks: dict[str, list[WithdrawalHook]] = {}


def consent_withdrawal_hook(purpose: str, hook: WithdrawalHook) -> None:
    """Registers `hook(cardholder_ids)` to run inside every withdrawal of `purpose`, before members' own data is
    cleared (a hook may wait for a job that is writing what it removes). Registered once per app, in its `ready()`."""
    hooks = _withdrawal_hooks.setdefault(purpose, [])
    if hook not in hooks:
        hooks.append(hook)


def _forget(purpose: str, cardholder_ids: Sequence[int]) -> None:
    """What was derived under `purpose` goes, in the caller's transaction: the registered hooks' data first, then, for
    personalised offers, every segment tag (operator-set ones too)."""
    if not cardholder_ids:
        return
    for hook in _withdrawal_hooks.get(purpose, ()):
        hook(cardholder_ids)
    if purpose == ConsentPurpose.PERSONALISED_OFFERS:
        Cardholder.objects.filter(pk__in=cardholder_ids).exclude(segment_tags=[]).update(segment_tags=[])


@transaction.atomic
def consent_text_publish(*, purpose: str, text_zh: str, text_en: str, actor: Actor = None) -> ConsentText:
    if purpose not in ConsentPurpose.values:
        raise ValidationFailed(_("Unknown purpose."), param="purpose")
    if not text_zh.strip() or not text_en.strip():
        raise ValidationFailed(_("Both the Chinese and the English text are required."), param="text")
    latest = ConsentText.objects.select_for_update().filter(purpose=purpose).order_by("-version").first()
    text = ConsentText.objects.create(
        purpose=purpose, version=(latest.version + 1) if latest else 1, text_zh=text_zh, text_en=text_en
    )
    audit_record(actor=actor, action="members.consent_text_publish", obj=text, after=snapshot(text))
    return text


def _current_text(purpose: str) -> ConsentText:
    text = ConsentText.objects.filter(purpose=purpose).order_by("-version").first()
    if text is None:
        raise ValidationFailed(_("There is no published text for this purpose yet."), param="purpose")
    return text


def _consent_set(*, cardholder: Cardholder, purpose: str, granted: bool) -> Consent:
    if purpose not in ConsentPurpose.values:
        raise ValidationFailed(_("Unknown purpose."), param="purpose")
    text = _current_text(purpose) if granted else None
    with transaction.atomic():
        consent, _created = Consent.objects.select_for_update().get_or_create(
            cardholder=cardholder, purpose=purpose, defaults={"granted": False}
        )
        if not granted:  # even when already withdrawn: a "no" is honoured whatever was set meanwhile
            _forget(purpose, [cardholder.pk])
            if purpose == ConsentPurpose.PERSONALISED_OFFERS:
                cardholder.segment_tags = []
        if consent.granted == granted and (not granted or consent.text_id == text.pk):  # type: ignore[union-attr]
            return consent
        consent.granted = granted
        if granted:
            consent.text = text
        consent.save()
        action = ConsentEvent.Action.GRANTED if granted else ConsentEvent.Action.WITHDRAWN
        ConsentEvent.objects.create(cardholder=cardholder, purpose=purpose, action=action, text=consent.text)
        audit_record(actor=cardholder.user, action=f"members.consent_{action}", obj=consent, after=snapshot(consent))
    return consent


def consent_grant(*, cardholder: Cardholder, purpose: str) -> Consent:
    """Grants `purpose` under the current text version; honoured at once (`selectors.consent_granted`)."""
    return _consent_set(cardholder=cardholder, purpose=purpose, granted=True)


def consent_withdraw(*, cardholder: Cardholder, purpose: str) -> Consent:
    return _consent_set(cardholder=cardholder, purpose=purpose, granted=False)


@transaction.atomic
def consents_grant_many(*, cardholders: Sequence[Cardholder], purpose: str, actor: Actor = None) -> int:
    """Grants one purpose to many cardholders who have no consent row for it yet (demo and bulk onboarding)."""
    text = _current_text(purpose)
    ids = [c.pk for c in cardholders]
    existing = set(
        Consent.objects.filter(cardholder_id__in=ids, purpose=purpose).values_list("cardholder_id", flat=True)
    )
    fresh = [c for c in cardholders if c.pk not in existing]
    Consent.objects.bulk_create([Consent(cardholder=c, purpose=purpose, granted=True, text=text) for c in fresh])
    ConsentEvent.objects.bulk_create(
        [ConsentEvent(cardholder=c, purpose=purpose, action=ConsentEvent.Action.GRANTED, text=text) for c in fresh]
    )
    audit_record(actor=actor, action="members.consent_grant_many", after={"purpose": purpose, "count": len(fresh)})
    return len(fresh)


@transaction.atomic
def consents_withdraw_many(*, cardholders: Sequence[Cardholder], purpose: str, actor: Actor = None) -> int:
    """Withdraws one purpose for many cardholders (those with it granted); each withdrawal is an event."""
    ids = [c.pk for c in cardholders]
    granted = list(
        Consent.objects.select_for_update().filter(cardholder_id__in=ids, purpose=purpose, granted=True).order_by("id")
    )
    Consent.objects.filter(pk__in=[c.pk for c in granted]).update(granted=False, changed_at=timezone.now())
    _forget(purpose, [c.cardholder_id for c in granted])
    ConsentEvent.objects.bulk_create(
        [
            ConsentEvent(
                cardholder_id=c.cardholder_id, purpose=purpose, action=ConsentEvent.Action.WITHDRAWN, text=c.text
            )
            for c in granted
        ]
    )
    audit_record(actor=actor, action="members.consent_withdraw_many", after={"purpose": purpose, "count": len(granted)})
    return len(granted)
