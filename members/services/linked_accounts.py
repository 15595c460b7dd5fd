"""Linking balance accounts at member banks (bank account, wallet, prepaid, digital RMB), one or a batch.

An account number is used only in memory here — for its checks and the keyed fingerprint — and then dropped; only its
masked form is kept. It never reaches a model field, a log line, an exception message, a task argument, a cache or a
session.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from core.audit import audit_record, snapshot
from core.crypto import keyed_hash
from core.errors import Conflict, ValidationFailed

from ..issuers import IssuerVerifier, get_verifier
from ..models import BindingChallenge, BindingStatus, Cardholder, LinkedAccount, MemberBank
from .binding import LIVE, MAX_CODE_ATTEMPTS, digits, enqueue_expiry, refuse_duplicate, refuse_too_many_starts
from .common import Actor

_ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z]{8,32}$")


@sensitive_variables("number")
def account_fingerprint(kind: str, number: str) -> str:
    return keyed_hash(f"{kind}:{number}", purpose="linked-account")


@sensitive_variables("account_number", "number")
def _account_facts(bank: MemberBank, kind: str, account_number: str) -> tuple[str, str]:
    """(masked number, fingerprint) of an account being linked, after its checks."""
    number = digits(account_number)
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
    refuse_duplicate(LinkedAccount, cardholder, fingerprint)
    refuse_too_many_starts(cardholder)
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
        enqueue_expiry(challenge)
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
