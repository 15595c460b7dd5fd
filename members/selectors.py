"""Members: reads."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from core.errors import NotFound
from core.scoping import BankRoles

from .models import (
    BankOperator,
    BindingChallenge,
    BindingStatus,
    Card,
    Cardholder,
    CardProduct,
    Consent,
    ConsentEvent,
    ConsentPurpose,
    ConsentText,
    LinkedAccount,
    MemberBank,
    PointsProgram,
)


def bank_roles_for_user(user: AbstractBaseUser) -> BankRoles:
    """The banks a staff user operates (read-write) and audits (read-only); used by the scoped admin."""
    operated: set[int] = set()
    audited: set[int] = set()
    for bank_id, role in BankOperator.objects.filter(user_id=user.pk).values_list("bank_id", "role"):
        (operated if role == BankOperator.Role.OPERATOR else audited).add(bank_id)
    return BankRoles(frozenset(operated), frozenset(audited))


def cardholder_for_user(user: AbstractBaseUser | AnonymousUser) -> Cardholder | None:
    if not getattr(user, "is_authenticated", False) or user.pk is None:
        return None
    return Cardholder.objects.filter(user_id=int(user.pk)).first()


def cardholder_by_phone(phone: str) -> Cardholder | None:
    from .services import phone_hash

    return Cardholder.objects.filter(phone_hash=phone_hash(phone.strip())).first()


def cardholders_by_national_id(national_id: str) -> QuerySet[Cardholder]:
    from .services import national_id_hash

    return Cardholder.objects.filter(national_id_hash=national_id_hash(national_id.strip()))


def cards_of(cardholder: Cardholder, *, include_closed: bool = False) -> QuerySet[Card]:
    cards = Card.objects.filter(cardholder=cardholder).select_related("bank", "product")
    if not include_closed:
        cards = cards.exclude(status=BindingStatus.CLOSED)
    return cards.order_by("bank__code", "id")


def card_of(cardholder: Cardholder, card_id: int) -> Card:
    """One of the cardholder's own cards; any other id is simply not found."""
    card = Card.objects.select_related("bank", "product").filter(cardholder=cardholder, pk=card_id).first()
    if card is None:
        raise NotFound("No such card.")
    return card


def linked_accounts_of(cardholder: Cardholder) -> QuerySet[LinkedAccount]:
    return (
        LinkedAccount.objects.filter(cardholder=cardholder)
        .exclude(status=BindingStatus.CLOSED)
        .select_related("bank")
        .order_by("bank__code", "id")
    )


def challenge_of(cardholder: Cardholder, challenge_id: int) -> BindingChallenge:
    challenge = (
        BindingChallenge.objects.select_related("bank", "card", "linked_account")
        .filter(pk=challenge_id, card__cardholder=cardholder)
        .first()
        or BindingChallenge.objects.select_related("bank", "card", "linked_account")
        .filter(pk=challenge_id, linked_account__cardholder=cardholder)
        .first()
    )
    if challenge is None:
        raise NotFound("No such binding.")
    return challenge


def banks_for_accounts() -> QuerySet[MemberBank]:
    return MemberBank.objects.filter(status=MemberBank.Status.ACTIVE).order_by("code")


def consent_granted(cardholder: Cardholder, purpose: str) -> bool:
    """The current state, read at the moment of use: a withdrawal is honoured at once. No row means not granted."""
    return Consent.objects.filter(cardholder=cardholder, purpose=purpose, granted=True).exists()


def consents_overview(cardholder: Cardholder) -> list[dict[str, Any]]:
    """Every purpose with its current state and the text the cardholder would agree to now."""
    current = {c.purpose: c for c in Consent.objects.filter(cardholder=cardholder).select_related("text")}
    overview = []
    for purpose, label in ConsentPurpose.choices:
        consent = current.get(purpose)
        latest = ConsentText.objects.filter(purpose=purpose).order_by("-version").first()
        overview.append(
            {
                "purpose": purpose,
                "label": label,
                "granted": bool(consent and consent.granted),
                "agreed_version": consent.text.version if consent and consent.text and consent.granted else None,
                "latest": latest,
                "outdated": bool(consent and consent.granted and latest and consent.text_id != latest.pk),
            }
        )
    return overview


def consent_history(cardholder: Cardholder) -> QuerySet[ConsentEvent]:
    return ConsentEvent.objects.filter(cardholder=cardholder).select_related("text").order_by("-at", "-id")


# A bank's active points programme is read on every payment and changes rarely: each process keeps it for
# POINTS_PROGRAM_CACHE_TTL seconds, and forgets it at once when this process saves or deletes a programme.
_programs: dict[int, tuple[float, PointsProgram | None]] = {}


def active_program(bank_id: int) -> PointsProgram | None:
    """The bank's active points programme, or None. Callers must not modify the returned object."""
    now = time.monotonic()
    cached = _programs.get(bank_id)
    if cached is not None and now - cached[0] < settings.POINTS_PROGRAM_CACHE_TTL:
        return cached[1]
    program = PointsProgram.objects.filter(bank_id=bank_id, active=True).order_by("unit_code", "pk").first()
    _programs[bank_id] = (now, program)
    return program


def programs_changed(**_: Any) -> None:
    _programs.clear()


def category_rate(rates: dict[str, Any], spend_category: str) -> Decimal:
    """A card product's rate (earning or cashback) for a spend category: the category's own, else the "other" rate,
    else none; an unreadable or negative rate counts as none."""
    raw = rates.get(spend_category, rates.get("other", "0"))
    try:
        rate = Decimal(str(raw))
    except ArithmeticError:
        return Decimal(0)
    return rate if rate.is_finite() and rate > 0 else Decimal(0)


def products_on_offer() -> QuerySet[CardProduct]:
    """The active card products of the alliance's active member banks, with their bank and its points programme."""
    return (
        CardProduct.objects.filter(active=True, bank__status=MemberBank.Status.ACTIVE)
        .select_related("bank", "bank__points_program")
        .order_by("bank__code", "code")
    )


def bank_choices_for_scope(scope: Any) -> list[tuple[int, str]]:
    """The member banks an operator may pick on the dashboard: all for alliance operators, else their own."""
    banks = MemberBank.objects.order_by("code")
    if not scope.everything:
        banks = banks.filter(pk__in=scope.bank_ids)
    return [(bank.pk, f"{bank.code} {bank.local_name}") for bank in banks]
