"""Registering cardholders, one by one or in a batch, under the same rules.

A cardholder's phone number and resident ID number (GB 11643-1999) are checked, stored encrypted and found again by
keyed hash (`phone_hash`, `national_id_hash`); only their last four digits are shown. The name is stored encrypted
too (the model's `display_name` property), shown masked and found by the exact name's keyed hash (`name_hash`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.postgres.fields import ArrayField
from django.db import transaction
from django.db.models import (
    BooleanField,
    Case,
    Exists,
    F,
    Func,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce
from django.utils.translation import gettext as _

from core import personal
from core.audit import audit_record
from core.crypto import encrypt, keyed_hash
from core.errors import Conflict, ValidationFailed

from ..models import Cardholder, Consent, ConsentPurpose
from .common import Actor

NAME_MAX_LENGTH = 100  # the name is stored encrypted: no column length checks it
_PHONE = re.compile(r"^1[3-9]\d{9}$")
_NATIONAL_ID = re.compile(r"^\d{17}[\dX]$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


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


def name_hash(name: str) -> str:
    """The keyed hash a cardholder's exact name (any case or spacing) is found by."""
    return personal.name_hash(name)


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
    if len(person.display_name.strip()) > NAME_MAX_LENGTH:
        raise ValidationFailed(
            _("A display name has at most %(count)d characters.") % {"count": NAME_MAX_LENGTH}, param="display_name"
        )
    row = Cardholder(
        phone_encrypted=encrypt(phone),
        phone_hash=phone_hash(phone),
        phone_last4=phone[-4:],
        national_id_encrypted=encrypt(national_id) if national_id else "",
        national_id_hash=national_id_hash(national_id) if national_id else "",
        national_id_last4=national_id[-4:] if national_id else "",
        verification_level=person.verification_level,
    )
    row.display_name = person.display_name.strip()  # encrypted, with its masked form and hash
    return row


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


SEGMENT_TAG = re.compile(r"[a-z0-9_-]{1,32}")
MAX_SEGMENT_TAGS = 10


def segment_tags_parse(value: str | Sequence[str]) -> list[str]:
    """Segment tags from "dining, frequent_traveller" (or a list): lowercase ASCII words (letters, digits, _ and -) of
    up to 32 characters, at most ten, duplicates dropped, in the order given. Anything else is refused whole."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    tags: list[str] = []
    for part in parts:
        tag = str(part).strip()
        if not tag:
            continue
        if not SEGMENT_TAG.fullmatch(tag):
            raise ValidationFailed(
                _("“%(tag)s” is not a tag: use lowercase letters, digits, _ and - (up to 32).") % {"tag": tag[:40]},
                code="segment_tag",
                param="segment_tags",
            )
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_SEGMENT_TAGS:
        raise ValidationFailed(
            _("At most %(count)d segment tags.") % {"count": MAX_SEGMENT_TAGS},
            code="segment_tags",
            param="segment_tags",
        )
    return tags


def segment_tags_sync(*, owned: Sequence[str], derived: QuerySet[Any]) -> int:
    """Writes the tags a segment job derived, for every cardholder at once, in one UPDATE; answers how many changed.

    `owned` are the tags the job decides (its rules' codes): each cardholder's are replaced by the ones `derived`
    gives them, their other tags (set by operators) kept in their order, the derived ones after. `derived` is a
    queryset of rows `cardholder_id`, `tags` (a JSON array), at most one per cardholder. A cardholder who does not
    consent to personalised offers is given no derived tag, whatever `derived` says. Rows already right are not
    written."""
    consenting = Consent.objects.filter(
        cardholder_id=OuterRef("pk"), purpose=ConsentPurpose.PERSONALISED_OFFERS, granted=True
    )
    given = Subquery(derived.filter(cardholder_id=OuterRef("pk")).values("tags")[:1], output_field=JSONField())
    codes = Cast(Value(list(owned), output_field=ArrayField(TextField())), ArrayField(TextField()))
    kept = _JSONBOperator(F("segment_tags"), codes, operator="-")
    tags = Case(
        When(
            Exists(consenting),
            then=_JSONBOperator(kept, Coalesce(given, Cast(Value("[]"), JSONField())), operator="||"),
        ),
        default=kept,
        output_field=JSONField(),
    )
    changed = _JSONBOperator(F("segment_tags"), tags, operator="IS DISTINCT FROM", output_field=BooleanField())
    candidates = ~Q(segment_tags=[]) | Q(pk__in=derived.values("cardholder_id"))
    return Cardholder.objects.filter(candidates).filter(changed).update(segment_tags=tags)


class _JSONBOperator(Func):
    """`left <operator> right`: jsonb's `-` (remove these strings from an array), `||` (concatenate) and the like."""

    template = "(%(expressions)s)"
    output_field = JSONField()

    def __init__(self, left: Any, right: Any, *, operator: str, **extra: Any) -> None:
        super().__init__(left, right, arg_joiner=f" {operator} ", **extra)
