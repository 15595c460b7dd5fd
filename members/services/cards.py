"""Cards: binding one (or a batch), freezing and unfreezing.

A card number is used only in memory here — for Luhn, the BIN and the keyed fingerprint — and then dropped. It never
reaches a model field, a log line, an exception message, a task argument, a cache or a session.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from core.audit import audit_record, snapshot
from core.calendar import local_now
from core.crypto import keyed_hash
from core.errors import Conflict, ValidationFailed
from core.logging import luhn_valid
from core.text import ascii_digits

from ..issuers import IssuerVerifier, get_verifier
from ..models import BindingChallenge, BindingStatus, BinRange, Card, Cardholder, MemberBank
from .binding import LIVE, MAX_CODE_ATTEMPTS, digits, enqueue_expiry, refuse_duplicate, refuse_too_many_starts
from .common import Actor


@dataclass(frozen=True)
class CardFacts:
    bin: str
    last4: str
    fingerprint: str
    bank_id: int
    product_id: int
    bank_code: str


@sensitive_variables("card_number")
def card_fingerprint(card_number: str) -> str:
    return keyed_hash(card_number, purpose="card-pan")


@sensitive_variables("card_number", "number")
def _card_facts(card_number: str, expiry_month: int, expiry_year: int, bins: dict[str, BinRange] | None) -> CardFacts:
    number = digits(card_number)
    if not ascii_digits(number) or not 13 <= len(number) <= 19:
        raise ValidationFailed(_("A card number has 13 to 19 digits."), code="card_number_invalid", param="card_number")
    if not luhn_valid(number):
        raise ValidationFailed(
            _("That card number is not valid: please check it."), code="card_number_invalid", param="card_number"
        )
    candidates = [number[:8], number[:7], number[:6]]
    if bins is None:
        found = {b.prefix: b for b in BinRange.objects.select_related("bank").filter(prefix__in=candidates)}
    else:
        found = {prefix: bins[prefix] for prefix in candidates if prefix in bins}
    bin_range = next((found[prefix] for prefix in candidates if prefix in found), None)
    if bin_range is None or bin_range.card_length != len(number):
        raise ValidationFailed(
            _("This card is not issued by a member of the alliance."), code="card_bin_unknown", param="card_number"
        )
    if not 1 <= expiry_month <= 12 or expiry_year < 2000 or expiry_year > 2100:
        raise ValidationFailed(_("Enter the expiry date as MM/YY."), code="card_expiry_invalid", param="expiry")
    today = local_now().date()
    if (expiry_year, expiry_month) < (today.year, today.month):
        raise ValidationFailed(
            _("This card expired at the end of %(month)02d/%(year)d.") % {"month": expiry_month, "year": expiry_year},
            code="card_expired",
            param="expiry",
        )
    if bin_range.bank.status != MemberBank.Status.ACTIVE:
        raise ValidationFailed(_("This card's bank is not active in the alliance."), code="bank_inactive")
    return CardFacts(
        bin=number[:6],
        last4=number[-4:],
        fingerprint=card_fingerprint(number),
        bank_id=bin_range.bank_id,
        product_id=bin_range.product_id,
        bank_code=bin_range.bank.code,
    )


@sensitive_variables("card_number")
def card_bind_start(
    *,
    cardholder: Cardholder,
    card_number: str,
    expiry_month: int,
    expiry_year: int,
    verifier: IssuerVerifier | None = None,
) -> BindingChallenge:
    """Checks the card (Luhn, BIN, expiry, duplicates), asks the issuer to send a code, records a pending card.

    The issuer call is made outside any transaction; the card stays pending until `binding_verify`."""
    facts = _card_facts(card_number, expiry_month, expiry_year, None)
    refuse_duplicate(Card, cardholder, facts.fingerprint)
    refuse_too_many_starts(cardholder)
    started = (verifier or get_verifier()).start(
        bank_code=facts.bank_code,
        subject_fingerprint=facts.fingerprint,
        holder_key=cardholder.phone_hash,
        phone_hint=cardholder.phone_last4,
    )
    with transaction.atomic():
        card = Card.objects.create(
            cardholder=cardholder,
            bank_id=facts.bank_id,
            product_id=facts.product_id,
            token="card_" + secrets.token_hex(16),
            bin=facts.bin,
            last4=facts.last4,
            fingerprint=facts.fingerprint,
            expiry_month=expiry_month,
            expiry_year=expiry_year,
            status=BindingStatus.PENDING,
        )
        challenge = BindingChallenge.objects.create(
            bank_id=facts.bank_id,
            card=card,
            issuer_reference=started.reference,
            expires_at=started.expires_at,
            max_attempts=MAX_CODE_ATTEMPTS,
        )
        audit_record(
            actor=cardholder.user,
            action="members.card_bind_start",
            obj=card,
            after=snapshot(card),
            bank_id=card.bank_id,
        )
        enqueue_expiry(challenge)
    return challenge


@dataclass(frozen=True)
class CardBindRequest:
    cardholder: Cardholder
    card_number: str = field(repr=False)
    expiry_month: int
    expiry_year: int


@sensitive_variables("requests", "request")
def cards_bind_many(
    *,
    requests: Sequence[CardBindRequest],
    verifier: IssuerVerifier,
    read_code: Callable[[Cardholder, str], str],
    actor: Actor = None,
) -> list[Card]:
    """Binds many cards with every rule of the one-by-one path: Luhn, BIN, expiry, duplicates, and the issuer's
    one-time code for each card (`read_code(cardholder, reference)` is the holder reading their phone). All or
    nothing: one refusal binds none."""
    bins = {b.prefix: b for b in BinRange.objects.select_related("bank")}
    facts = [_card_facts(r.card_number, r.expiry_month, r.expiry_year, bins) for r in requests]
    fingerprints = [f.fingerprint for f in facts]
    if len(set(fingerprints)) != len(fingerprints):
        raise Conflict(_("The batch repeats a card."), code="already_bound")
    if Card.objects.filter(fingerprint__in=fingerprints, status__in=LIVE).exists():
        raise Conflict(_("A card in the batch is bound already."), code="bound_elsewhere")
    started_at = timezone.now()
    references = []
    for request, fact in zip(requests, facts, strict=True):
        started = verifier.start(
            bank_code=fact.bank_code,
            subject_fingerprint=fact.fingerprint,
            holder_key=request.cardholder.phone_hash,
            phone_hint=request.cardholder.phone_last4,
        )
        result = verifier.verify(reference=started.reference, code=read_code(request.cardholder, started.reference))
        if not result.verified:
            raise ValidationFailed(_("The issuer did not confirm the holder."), code="issuer_refused")
        references.append(started)
    with transaction.atomic():
        cards = Card.objects.bulk_create(
            [
                Card(
                    cardholder=request.cardholder,
                    bank_id=fact.bank_id,
                    product_id=fact.product_id,
                    token="card_" + secrets.token_hex(16),
                    bin=fact.bin,
                    last4=fact.last4,
                    fingerprint=fact.fingerprint,
                    expiry_month=request.expiry_month,
                    expiry_year=request.expiry_year,
                    status=BindingStatus.ACTIVE,
                    activated_at=started_at,
                )
                for request, fact in zip(requests, facts, strict=True)
            ]
        )
        if any(card.pk is None for card in cards):
            ids = dict(Card.objects.filter(fingerprint__in=fingerprints, status__in=LIVE).values_list("token", "pk"))
            for card in cards:
                card.pk = ids[card.token]
        BindingChallenge.objects.bulk_create(
            [
                BindingChallenge(
                    bank_id=card.bank_id,
                    card=card,
                    issuer_reference=started.reference,
                    status=BindingChallenge.Status.VERIFIED,
                    attempts=1,
                    max_attempts=MAX_CODE_ATTEMPTS,
                    expires_at=started.expires_at,
                )
                for card, started in zip(cards, references, strict=True)
            ]
        )
        audit_record(actor=actor, action="members.card_bind_many", after={"count": len(cards)})
    return cards


def _card_set_status(*, card: Card, frm: str, to: str, actor: Actor, action: str, reason: str) -> Card:
    with transaction.atomic():
        locked = Card.objects.select_for_update().get(pk=card.pk)
        if locked.status != frm:
            raise Conflict(_("This card is %(status)s.") % {"status": locked.get_status_display()}, code="card_state")
        before = snapshot(locked)
        locked.status = to
        locked.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action=action,
            obj=locked,
            before=before,
            after=snapshot(locked),
            reason=reason,
            bank_id=locked.bank_id,
        )
    return locked


def card_freeze(*, card: Card, actor: Actor, reason: str = "") -> Card:
    return _card_set_status(
        card=card,
        frm=BindingStatus.ACTIVE,
        to=BindingStatus.FROZEN,
        actor=actor,
        action="members.card_freeze",
        reason=reason,
    )


def card_unfreeze(*, card: Card, actor: Actor, reason: str = "") -> Card:
    return _card_set_status(
        card=card,
        frm=BindingStatus.FROZEN,
        to=BindingStatus.ACTIVE,
        actor=actor,
        action="members.card_unfreeze",
        reason=reason,
    )
