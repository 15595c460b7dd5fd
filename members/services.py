"""Members: writes.

Card numbers and account numbers are used only in memory here — for Luhn, BIN and the keyed fingerprint — and then
dropped. They never reach a model field, a log line, an exception message, a task argument, a cache or a session.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from core.audit import audit_record, snapshot
from core.calendar import local_now
from core.crypto import encrypt, keyed_hash
from core.enqueue import enqueue_on_commit
from core.errors import Conflict, RateLimited, ValidationFailed
from core.logging import luhn_valid
from core.text import ascii_digits

from .issuers import IssuerVerifier, get_verifier
from .models import (
    BankOperator,
    BindingChallenge,
    BindingStatus,
    BinRange,
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
from .selectors import challenge_of

Actor = AbstractBaseUser | AnonymousUser | None

MAX_CODE_ATTEMPTS = 5
MAX_BIND_STARTS_PER_HOUR = 10
LIVE = (BindingStatus.ACTIVE, BindingStatus.FROZEN)

_PHONE = re.compile(r"^1[3-9]\d{9}$")
_NATIONAL_ID = re.compile(r"^\d{17}[\dX]$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


# --- banks, programs, products, BINs, operators -----------------------------------------------------------------


@transaction.atomic
def bank_create(
    *,
    code: str,
    name_zh: str,
    name_en: str,
    kind: str,
    joined_on: dt.date,
    brand_colour: str = "#b3261e",
    issuing_licence: bool = True,
    acquiring_licence: bool = False,
    prepaid_licence: bool = False,
    actor: Actor = None,
) -> MemberBank:
    if MemberBank.objects.filter(code=code).exists():
        raise Conflict(_("A member bank with code %(code)s exists.") % {"code": code}, code="bank_exists")
    bank = MemberBank(
        code=code,
        name_zh=name_zh,
        name_en=name_en,
        kind=kind,
        joined_on=joined_on,
        brand_colour=brand_colour,
        issuing_licence=issuing_licence,
        acquiring_licence=acquiring_licence,
        prepaid_licence=prepaid_licence,
    )
    bank.full_clean()
    bank.save()
    audit_record(actor=actor, action="members.bank_create", obj=bank, after=snapshot(bank), bank_id=bank.pk)
    return bank


@transaction.atomic
def program_create(
    *,
    bank: MemberBank,
    unit_code: str,
    name: str,
    point_value_cny: Decimal,
    expiry_policy: str = PointsProgram.ExpiryPolicy.END_OF_YEAR,
    expiry_period: int = 2,
    actor: Actor = None,
) -> PointsProgram:
    if PointsProgram.objects.filter(bank=bank).exists():
        raise Conflict(_("This bank already has a points program."), code="program_exists")
    program = PointsProgram(
        bank=bank,
        unit_code=unit_code,
        name=name,
        point_value_cny=point_value_cny,
        expiry_policy=expiry_policy,
        expiry_period=expiry_period,
    )
    program.full_clean()
    program.save()
    audit_record(actor=actor, action="members.program_create", obj=program, after=snapshot(program), bank_id=bank.pk)
    return program


@transaction.atomic
def product_create(
    *,
    bank: MemberBank,
    code: str,
    name: str,
    kind: str,
    tier: str = CardProduct.Tier.STANDARD,
    earning_rates: dict[str, str] | None = None,
    cashback_rates: dict[str, str] | None = None,
    included_benefits: str = "",
    feature_tags: list[str] | None = None,
    actor: Actor = None,
) -> CardProduct:
    for rates in (earning_rates or {}, cashback_rates or {}):
        for category, rate in rates.items():
            if Decimal(rate) < 0:
                raise ValidationFailed(_("Rates cannot be negative."), param=category)
    product = CardProduct(
        bank=bank,
        code=code,
        name=name,
        kind=kind,
        tier=tier,
        earning_rates=earning_rates or {},
        cashback_rates=cashback_rates or {},
        included_benefits=included_benefits,
        feature_tags=feature_tags or [],
    )
    product.full_clean()
    product.save()
    audit_record(actor=actor, action="members.product_create", obj=product, after=snapshot(product), bank_id=bank.pk)
    return product


@transaction.atomic
def bin_range_create(*, product: CardProduct, prefix: str, card_length: int = 16, actor: Actor = None) -> BinRange:
    bin_range = BinRange(prefix=prefix, bank=product.bank, product=product, card_length=card_length)
    bin_range.full_clean()
    bin_range.save()
    audit_record(
        actor=actor, action="members.bin_create", obj=bin_range, after=snapshot(bin_range), bank_id=product.bank_id
    )
    return bin_range


@transaction.atomic
def bank_operator_add(*, user: AbstractBaseUser, bank: MemberBank, role: str, actor: Actor = None) -> BankOperator:
    from django.contrib.auth.models import Group

    from core.scoping import BANK_AUDITORS, BANK_OPERATORS

    operator, _created = BankOperator.objects.update_or_create(user_id=user.pk, bank=bank, defaults={"role": role})
    group = BANK_OPERATORS if role == BankOperator.Role.OPERATOR else BANK_AUDITORS
    user.groups.add(Group.objects.get(name=group))  # type: ignore[attr-defined]
    if not getattr(user, "is_staff", False):
        get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    audit_record(actor=actor, action="members.operator_add", obj=operator, after=snapshot(operator), bank_id=bank.pk)
    return operator


# --- cardholders -------------------------------------------------------------------------------------------------


def national_id_valid(value: str) -> bool:
    """GB 11643-1999: 17 digits and a check character."""
    if not _NATIONAL_ID.match(value):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def phone_hash(phone: str) -> str:
    return keyed_hash(phone, purpose="cardholder-phone")


def national_id_hash(national_id: str) -> str:
    return keyed_hash(national_id.upper(), purpose="cardholder-national-id")


@dataclass(frozen=True)
class NewCardholder:
    username: str
    display_name: str
    phone: str = field(repr=False)
    national_id: str = field(default="", repr=False)
    password: str | None = field(default=None, repr=False)
    verification_level: int = Cardholder.VerificationLevel.BASIC


def _cardholder_row(person: NewCardholder) -> Cardholder:
    phone = person.phone.strip()
    national_id = person.national_id.strip().upper()
    if not _PHONE.match(phone):
        raise ValidationFailed(_("Enter a mainland mobile number (11 digits, starting with 1)."), param="phone")
    if national_id and not national_id_valid(national_id):
        raise ValidationFailed(_("That is not a valid resident ID number."), param="national_id")
    if not person.username or not person.display_name.strip():
        raise ValidationFailed(_("A username and a display name are required."), param="username")
    return Cardholder(
        display_name=person.display_name.strip(),
        phone_encrypted=encrypt(phone),
        phone_hash=phone_hash(phone),
        phone_last4=phone[-4:],
        national_id_encrypted=encrypt(national_id) if national_id else "",
        national_id_hash=national_id_hash(national_id) if national_id else "",
        national_id_last4=national_id[-4:] if national_id else "",
        verification_level=person.verification_level,
    )


@transaction.atomic
def cardholders_register_many(*, people: Sequence[NewCardholder], actor: Actor = None) -> list[Cardholder]:
    """Registers cardholders in one batch with every rule of `cardholder_register`; all or nothing.

    People without a password get an unusable one (they sign in after a reset)."""
    User = get_user_model()
    rows = [_cardholder_row(person) for person in people]
    usernames = [person.username for person in people]
    hashes = [row.phone_hash for row in rows]
    if len(set(usernames)) != len(usernames) or len(set(hashes)) != len(hashes):
        raise Conflict(_("The batch repeats a username or a phone number."), code="cardholder_duplicate")
    if User.objects.filter(username__in=usernames).exists():
        raise Conflict(_("That username is taken."), code="username_taken", param="username")
    if Cardholder.objects.filter(phone_hash__in=hashes).exists():
        raise Conflict(_("A cardholder with that phone number exists."), code="phone_taken", param="phone")
    users = User.objects.bulk_create(
        [User(username=person.username, password=make_password(person.password)) for person in people]
    )
    if any(user.pk is None for user in users):  # backends that cannot return ids from a bulk insert
        by_name = dict(User.objects.filter(username__in=usernames).values_list("username", "pk"))
        for user in users:
            user.pk = by_name[user.get_username()]
    for row, user in zip(rows, users, strict=True):
        row.user = user
    created = Cardholder.objects.bulk_create(rows)
    if any(row.pk is None for row in created):
        by_user = dict(Cardholder.objects.filter(user__in=users).values_list("user_id", "pk"))
        for row in created:
            row.pk = by_user[row.user_id]
    audit_record(
        actor=actor,
        action="members.cardholder_register",
        after={"count": len(created), "first_id": created[0].pk if created else None},
    )
    return created


def cardholder_register(
    *,
    username: str,
    display_name: str,
    phone: str,
    national_id: str = "",
    password: str | None = None,
    verification_level: int = Cardholder.VerificationLevel.BASIC,
    actor: Actor = None,
) -> Cardholder:
    person = NewCardholder(
        username=username,
        display_name=display_name,
        phone=phone,
        national_id=national_id,
        password=password,
        verification_level=verification_level,
    )
    return cardholders_register_many(people=[person], actor=actor)[0]


# --- card facts (the PAN lives only inside these functions) -----------------------------------------------------


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


def _digits(value: str) -> str:
    return re.sub(r"[\s-]", "", value or "")


@sensitive_variables("card_number", "number")
def _card_facts(card_number: str, expiry_month: int, expiry_year: int, bins: dict[str, BinRange] | None) -> CardFacts:
    number = _digits(card_number)
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


def _refuse_duplicate(model: type[Card] | type[LinkedAccount], cardholder: Cardholder, fingerprint: str) -> None:
    live = model.objects.filter(fingerprint=fingerprint, status__in=LIVE).values_list("cardholder_id", flat=True)
    owners = set(live)
    if cardholder.pk in owners:
        raise Conflict(_("You have already bound this one."), code="already_bound")
    if owners:
        raise Conflict(_("This one is bound to another cardholder."), code="bound_elsewhere")


def _challenges_for(cardholder: Cardholder) -> Any:
    return BindingChallenge.objects.filter(Q(card__cardholder=cardholder) | Q(linked_account__cardholder=cardholder))


def _refuse_too_many_starts(cardholder: Cardholder) -> None:
    since = timezone.now() - dt.timedelta(hours=1)
    if _challenges_for(cardholder).filter(created_at__gte=since).count() >= MAX_BIND_STARTS_PER_HOUR:
        raise RateLimited(
            _("Too many binding attempts in the last hour. Please try again later."),
            retry_after=3600,
            code="binding_rate_limited",
        )


def _enqueue_expiry(challenge: BindingChallenge) -> None:
    from .tasks import binding_challenge_expire

    otherwise = "no job does: binding_verify closes it when its code comes late (a pending binding is unusable)"
    enqueue_on_commit(binding_challenge_expire, (challenge.pk,), eta=challenge.expires_at, otherwise=otherwise)


# --- binding a card ----------------------------------------------------------------------------------------------


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
    _refuse_duplicate(Card, cardholder, facts.fingerprint)
    _refuse_too_many_starts(cardholder)
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
        _enqueue_expiry(challenge)
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


# --- binding an account ------------------------------------------------------------------------------------------

_ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z]{8,32}$")


@sensitive_variables("number")
def account_fingerprint(kind: str, number: str) -> str:
    return keyed_hash(f"{kind}:{number}", purpose="linked-account")


@sensitive_variables("account_number", "number")
def _account_facts(bank: MemberBank, kind: str, account_number: str) -> tuple[str, str]:
    """(masked number, fingerprint) of an account being linked, after its checks."""
    number = _digits(account_number)
    if kind not in LinkedAccount.Kind.values:
        raise ValidationFailed(_("Choose the kind of account."), param="kind")
    if not _ACCOUNT_NUMBER.match(number):
        raise ValidationFailed(_("An account number has 8 to 32 letters or digits."), param="account_number")
    if kind == LinkedAccount.Kind.BANK_ACCOUNT and not bank.issuing_licence:
        raise ValidationFailed(_("This member does not hold bank accounts."), param="bank")
    if kind == LinkedAccount.Kind.PREPAID and not bank.prepaid_licence:
        raise ValidationFailed(_("This member does not issue prepaid balances."), param="bank")
    if bank.status != MemberBank.Status.ACTIVE:
        raise ValidationFailed(_("This bank is not active in the alliance."), param="bank")
    return "•••• " + number[-4:], account_fingerprint(kind, number)


@sensitive_variables("account_number")
def linked_account_bind_start(
    *,
    cardholder: Cardholder,
    bank: MemberBank,
    kind: str,
    account_number: str,
    currency: str = "CNY",
    verifier: IssuerVerifier | None = None,
) -> BindingChallenge:
    """Links a balance account at a member bank (account, wallet, prepaid, digital RMB): the member sends a code."""
    masked, fingerprint = _account_facts(bank, kind, account_number)
    _refuse_duplicate(LinkedAccount, cardholder, fingerprint)
    _refuse_too_many_starts(cardholder)
    started = (verifier or get_verifier()).start(
        bank_code=bank.code,
        subject_fingerprint=fingerprint,
        holder_key=cardholder.phone_hash,
        phone_hint=cardholder.phone_last4,
    )
    with transaction.atomic():
        account = LinkedAccount.objects.create(
            cardholder=cardholder,
            bank=bank,
            kind=kind,
            reference="acct_" + secrets.token_hex(16),
            masked_number=masked,
            fingerprint=fingerprint,
            currency=currency,
            status=BindingStatus.PENDING,
        )
        challenge = BindingChallenge.objects.create(
            bank=bank,
            linked_account=account,
            issuer_reference=started.reference,
            expires_at=started.expires_at,
            max_attempts=MAX_CODE_ATTEMPTS,
        )
        audit_record(
            actor=cardholder.user,
            action="members.account_bind_start",
            obj=account,
            after=snapshot(account),
            bank_id=bank.pk,
        )
        _enqueue_expiry(challenge)
    return challenge


@dataclass(frozen=True)
class AccountBindRequest:
    cardholder: Cardholder
    bank: MemberBank
    kind: str
    account_number: str = field(repr=False)
    currency: str = "CNY"


@sensitive_variables("requests", "request")
def linked_accounts_bind_many(
    *,
    requests: Sequence[AccountBindRequest],
    verifier: IssuerVerifier,
    read_code: Callable[[Cardholder, str], str],
    actor: Actor = None,
) -> list[LinkedAccount]:
    """Links many accounts with every rule of the one-by-one path, the member's code included; all or nothing."""
    facts = [_account_facts(r.bank, r.kind, r.account_number) for r in requests]
    fingerprints = [fingerprint for _masked, fingerprint in facts]
    if len(set(fingerprints)) != len(fingerprints):
        raise Conflict(_("The batch repeats an account."), code="already_bound")
    if LinkedAccount.objects.filter(fingerprint__in=fingerprints, status__in=LIVE).exists():
        raise Conflict(_("An account in the batch is linked already."), code="bound_elsewhere")
    started_at = timezone.now()
    references = []
    for request, (_masked, fingerprint) in zip(requests, facts, strict=True):
        started = verifier.start(
            bank_code=request.bank.code,
            subject_fingerprint=fingerprint,
            holder_key=request.cardholder.phone_hash,
            phone_hint=request.cardholder.phone_last4,
        )
        result = verifier.verify(reference=started.reference, code=read_code(request.cardholder, started.reference))
        if not result.verified:
            raise ValidationFailed(_("The member did not confirm the holder."), code="issuer_refused")
        references.append(started)
    with transaction.atomic():
        accounts = LinkedAccount.objects.bulk_create(
            [
                LinkedAccount(
                    cardholder=request.cardholder,
                    bank=request.bank,
                    kind=request.kind,
                    reference="acct_" + secrets.token_hex(16),
                    masked_number=masked,
                    fingerprint=fingerprint,
                    currency=request.currency,
                    status=BindingStatus.ACTIVE,
                    activated_at=started_at,
                )
                for request, (masked, fingerprint) in zip(requests, facts, strict=True)
            ]
        )
        if any(account.pk is None for account in accounts):
            ids = dict(
                LinkedAccount.objects.filter(fingerprint__in=fingerprints, status__in=LIVE).values_list(
                    "reference", "pk"
                )
            )
            for account in accounts:
                account.pk = ids[account.reference]
        BindingChallenge.objects.bulk_create(
            [
                BindingChallenge(
                    bank_id=account.bank_id,
                    linked_account=account,
                    issuer_reference=started.reference,
                    status=BindingChallenge.Status.VERIFIED,
                    attempts=1,
                    max_attempts=MAX_CODE_ATTEMPTS,
                    expires_at=started.expires_at,
                )
                for account, started in zip(accounts, references, strict=True)
            ]
        )
        audit_record(actor=actor, action="members.account_bind_many", after={"count": len(accounts)})
    return accounts


# --- the code ------------------------------------------------------------------------------------------------------


def _close_target(challenge: BindingChallenge, status: str) -> None:
    """Ends a pending challenge (never one that a concurrent try has verified) and closes its pending target."""
    if not BindingChallenge.objects.filter(pk=challenge.pk, status=BindingChallenge.Status.PENDING).update(
        status=status
    ):
        return
    target_model: Any = Card if challenge.card_id else LinkedAccount
    target_id = challenge.card_id or challenge.linked_account_id
    target_model.objects.filter(pk=target_id, status=BindingStatus.PENDING).update(status=BindingStatus.CLOSED)


def binding_verify(
    *, cardholder: Cardholder, challenge_id: int, code: str, verifier: IssuerVerifier | None = None
) -> Card | LinkedAccount:
    """Checks the cardholder's code with the issuer; the card or account becomes active only when it matches.

    Every try counts (taken with a guarded UPDATE before the issuer is asked); at the limit the challenge fails and
    the pending card is closed. An expired challenge closes it too."""
    challenge = challenge_of(cardholder, challenge_id)
    if challenge.status != BindingChallenge.Status.PENDING:
        raise Conflict(_("This verification is over. Please start again."), code="challenge_closed")
    if challenge.expires_at <= timezone.now():
        with transaction.atomic():
            _close_target(challenge, BindingChallenge.Status.EXPIRED)
        raise ValidationFailed(_("The code has expired. Please start again."), code="code_expired")
    code = (code or "").strip()
    if not re.fullmatch(r"\d{4,8}", code):
        raise ValidationFailed(_("Enter the code from the text message."), code="code_invalid", param="code")
    taken = BindingChallenge.objects.filter(
        pk=challenge.pk, status=BindingChallenge.Status.PENDING, attempts__lt=F("max_attempts")
    ).update(attempts=F("attempts") + 1)
    if not taken:
        raise Conflict(_("This verification is over. Please start again."), code="challenge_closed")
    result = (verifier or get_verifier()).verify(reference=challenge.issuer_reference, code=code)
    challenge.refresh_from_db(fields=["attempts", "status"])
    target: Card | LinkedAccount = challenge.card or challenge.linked_account  # type: ignore[assignment]
    if not result.verified:
        left = challenge.max_attempts - challenge.attempts
        if result.outcome == "expired":
            with transaction.atomic():
                _close_target(challenge, BindingChallenge.Status.EXPIRED)
            raise ValidationFailed(_("The code has expired. Please start again."), code="code_expired")
        if left <= 0:
            with transaction.atomic():
                _close_target(challenge, BindingChallenge.Status.FAILED)
                audit_record(actor=cardholder.user, action="members.bind_failed", obj=target, bank_id=target.bank_id)
            raise ValidationFailed(_("Too many wrong codes. Please start again later."), code="too_many_attempts")
        raise ValidationFailed(
            _("That code is not right. %(left)d tries left.") % {"left": left}, code="code_wrong", param="code"
        )
    try:
        with transaction.atomic():
            model: Any = type(target)
            locked = model.objects.select_for_update().get(pk=target.pk)
            if locked.status != BindingStatus.PENDING:
                raise Conflict(_("This verification is over. Please start again."), code="challenge_closed")
            locked.status = BindingStatus.ACTIVE
            locked.activated_at = timezone.now()
            locked.save(update_fields=["status", "activated_at"])
            BindingChallenge.objects.filter(pk=challenge.pk).update(status=BindingChallenge.Status.VERIFIED)
            audit_record(
                actor=cardholder.user,
                action="members.card_bound" if isinstance(locked, Card) else "members.account_linked",
                obj=locked,
                after=snapshot(locked),
                bank_id=locked.bank_id,
            )
    except IntegrityError as exc:  # a concurrent binding of the same card won
        with transaction.atomic():
            _close_target(challenge, BindingChallenge.Status.FAILED)
        raise Conflict(_("This one is bound to another cardholder."), code="bound_elsewhere") from exc
    return locked  # type: ignore[no-any-return]


@transaction.atomic
def binding_challenge_expire(*, challenge_id: int) -> bool:
    """Closes a challenge whose code has expired, and its pending card or account. True when it closed one."""
    challenge = BindingChallenge.objects.select_for_update().filter(pk=challenge_id).first()
    if challenge is None or challenge.status != BindingChallenge.Status.PENDING:
        return False
    if challenge.expires_at > timezone.now():
        return False
    _close_target(challenge, BindingChallenge.Status.EXPIRED)
    return True


# --- freezing ------------------------------------------------------------------------------------------------------


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


# --- consents ------------------------------------------------------------------------------------------------------


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
