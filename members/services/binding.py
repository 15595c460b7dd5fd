"""What binding a card and linking an account share: the checks before the issuer is asked, and its one-time code.

A card or account already bound (to this cardholder or another) is refused, and a cardholder starts at most
`MAX_BIND_STARTS_PER_HOUR` bindings an hour. The issuer sends a code; every try counts (`MAX_CODE_ATTEMPTS`), and the
pending card or account becomes active only when the code matches. At the limit, or once the code has expired, the
challenge ends and the pending card or account is closed.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.enqueue import enqueue_on_commit
from core.errors import Conflict, RateLimited, ValidationFailed

from ..issuers import IssuerVerifier, get_verifier
from ..models import BindingChallenge, BindingStatus, Card, Cardholder, LinkedAccount
from ..selectors import challenge_of

MAX_CODE_ATTEMPTS = 5
MAX_BIND_STARTS_PER_HOUR = 10
LIVE = (BindingStatus.ACTIVE, BindingStatus.FROZEN)


def digits(value: str) -> str:
    return re.sub(r"[\s-]", "", value or "")


def refuse_duplicate(model: type[Card] | type[LinkedAccount], cardholder: Cardholder, fingerprint: str) -> None:
    live = model.objects.filter(fingerprint=fingerprint, status__in=LIVE).values_list("cardholder_id", flat=True)
    owners = set(live)
    if cardholder.pk in owners:
        raise Conflict(_("You have already bound this one."), code="already_bound")
    if owners:
        raise Conflict(_("This one is bound to another cardholder."), code="bound_elsewhere")


def _challenges_for(cardholder: Cardholder) -> Any:
    return BindingChallenge.objects.filter(Q(card__cardholder=cardholder) | Q(linked_account__cardholder=cardholder))


def refuse_too_many_starts(cardholder: Cardholder) -> None:
    since = timezone.now() - dt.timedelta(hours=1)
    if _challenges_for(cardholder).filter(created_at__gte=since).count() >= MAX_BIND_STARTS_PER_HOUR:
        raise RateLimited(
            _("Too many binding attempts in the last hour. Please try again later."),
            retry_after=3600,
            code="binding_rate_limited",
        )


def enqueue_expiry(challenge: BindingChallenge) -> None:
    from ..tasks import binding_challenge_expire

    otherwise = "no job does: binding_verify closes it when its code comes late (a pending binding is unusable)"
    enqueue_on_commit(binding_challenge_expire, (challenge.pk,), eta=challenge.expires_at, otherwise=otherwise)


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
