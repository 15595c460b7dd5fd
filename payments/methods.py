"""Payment methods beyond a card on file: payment codes (付款码), agreements (协议支付) and balances.

An agreement is granted by its cardholder, either on the portal's agreements page (the token is shown to them once)
or on the hosted page of a merchant's agreement request (the token is kept encrypted on the request until the
merchant collects it, once, over the API).

Each resolves, for `payment_create`, to the cardholder and one funding source: a card or a linked account. A card
funds through an acquirer; a linked account through the channel that keeps it (bank debit, wallet, prepaid, digital
RMB), where authorising holds the amount, capturing takes the hold and cancelling releases it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core.audit import audit_record
from core.calendar import local_now
from core.crypto import decrypt, encrypt
from core.errors import Conflict, MengkaError, NotFound, ValidationFailed
from core.money import validate_minor_amount
from core.text import ascii_digits
from members.models import BindingStatus, Card, Cardholder, LinkedAccount
from merchants.models import Merchant

from . import events
from .models import (
    Agreement,
    AgreementRequest,
    Channel,
    PaymentCode,
    PaymentIntent,
    PaymentMethod,
    agreement_token_hash,
    agreement_token_hint,
    agreement_token_new,
)

CODE_TTL = dt.timedelta(seconds=60)
# Which channel kind keeps each kind of linked account.
ACCOUNT_CHANNEL_KIND: dict[str, str] = {
    LinkedAccount.Kind.BANK_ACCOUNT: Channel.Kind.BANK_DEBIT,
    LinkedAccount.Kind.WALLET: Channel.Kind.WALLET,
    LinkedAccount.Kind.PREPAID: Channel.Kind.PREPAID,
    LinkedAccount.Kind.DIGITAL_RMB: Channel.Kind.DIGITAL_RMB,
}
LIVE_STATUSES = (
    PaymentIntent.Status.PROCESSING,
    PaymentIntent.Status.REQUIRES_CAPTURE,
    PaymentIntent.Status.SUCCEEDED,
)


def require_usable_card(card: Card) -> None:
    if card.status != BindingStatus.ACTIVE:
        raise ValidationFailed("This card cannot be used: it is not active.", code="card_not_active", param="card")
    today = local_now().date()
    if (card.expiry_year, card.expiry_month) < (today.year, today.month):
        raise ValidationFailed("This card has expired.", code="card_expired", param="card")


def require_usable_account(account: LinkedAccount) -> None:
    if account.status != BindingStatus.ACTIVE:
        raise ValidationFailed(
            "This account cannot be used: it is not active.", code="account_not_active", param="linked_account"
        )


def _require_source(cardholder: Cardholder, card: Card | None, account: LinkedAccount | None) -> None:
    if (card is None) == (account is None):
        raise ValidationFailed("Choose one card or one linked account.", code="funding_source_required", param="card")
    if card is not None:
        if card.cardholder_id != cardholder.pk:
            raise NotFound("No such card.", param="card")
        require_usable_card(card)
    if account is not None:
        if account.cardholder_id != cardholder.pk:
            raise NotFound("No such account.", param="linked_account")
        require_usable_account(account)


# --- payment codes ------------------------------------------------------------------------------------------------


@transaction.atomic
def payment_code_generate(
    *,
    cardholder: Cardholder,
    card: Card | None = None,
    linked_account: LinkedAccount | None = None,
    use_points: bool = False,
) -> PaymentCode:
    """A fresh code, valid for 60 seconds; the cardholder's earlier unused codes stop working."""
    _require_source(cardholder, card, linked_account)
    now = timezone.now()
    PaymentCode.objects.filter(cardholder=cardholder, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    return PaymentCode.objects.create(
        cardholder=cardholder,
        card=card,
        linked_account=linked_account,
        use_points=use_points,
        created_at=now,
        expires_at=now + CODE_TTL,
    )


@dataclass(frozen=True)
class Funding:
    cardholder: Cardholder
    card: Card | None
    linked_account: LinkedAccount | None
    method: str
    payment_code: PaymentCode | None = None
    agreement: Agreement | None = None


def payment_code_find(code: str) -> Funding:
    """What a code pays with, read without taking it: refused when unknown, used before (a replay), or expired, and
    when its card or account is no longer usable. The payment then takes it (`payment_code_take`) in the transaction
    that writes the payment."""
    if not (isinstance(code, str) and len(code) == 18 and ascii_digits(code)):
        raise ValidationFailed("A payment code has 18 digits.", code="payment_code_invalid", param="payment_code")
    found = (
        PaymentCode.objects.select_related("cardholder", "card__product", "card__bank", "linked_account")
        .filter(code=code)
        .first()
    )
    if found is None or found.used_at is not None or found.expires_at <= timezone.now():
        raise _code_refused(found)
    card, account = found.card, found.linked_account
    if (card or account).cardholder_id != found.cardholder_id:  # type: ignore[union-attr]
        raise NotFound("No such payment code.", code="payment_code_invalid", param="payment_code")
    if card is not None:
        card.cardholder = found.cardholder
        require_usable_card(card)
    else:
        assert account is not None  # a code has exactly one funding source (a check constraint)
        account.cardholder = found.cardholder
        require_usable_account(account)
    return Funding(found.cardholder, card, account, PaymentMethod.PAYMENT_CODE, payment_code=found)


def payment_code_take(funding: Funding) -> None:
    """Takes the funding's code for a payment, in the caller's transaction: a guarded UPDATE that only one request
    can win while the code is unused and unexpired (a concurrent till waits for the winner's commit, then finds it
    used). Raises the refusal for a code another request took first, or that expired since it was read."""
    code = funding.payment_code
    assert code is not None
    now = timezone.now()
    taken = PaymentCode.objects.filter(pk=code.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not taken:
        raise _code_refused(PaymentCode.objects.filter(pk=code.pk).first())
    code.used_at = now


def payment_code_used_by(code: PaymentCode, payment: PaymentIntent) -> None:
    """Records on the taken code the payment made with it, in the transaction that writes the payment: the database
    holds a payment naming a code to be the one the code records (one payment per code, payments/migrations/0053)."""
    PaymentCode.objects.filter(pk=code.pk).update(used_by=payment)
    code.used_by = payment


def _code_refused(found: PaymentCode | None) -> MengkaError:
    if found is None:
        return NotFound("No such payment code.", code="payment_code_invalid", param="payment_code")
    if found.used_at is not None:
        return Conflict("This payment code has already been used.", code="payment_code_used")
    return ValidationFailed("This payment code has expired.", code="payment_code_expired", param="payment_code")


# --- agreements ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantedAgreement:
    agreement: Agreement
    token: str  # shown once, to the cardholder who granted it; only its keyed hash is stored


@transaction.atomic
def agreement_grant(
    *,
    cardholder: Cardholder,
    merchant: Merchant,
    limit_per_payment: int,
    limit_per_month: int,
    card: Card | None = None,
    linked_account: LinkedAccount | None = None,
    currency: str = "CNY",
    actor: Any = None,
) -> GrantedAgreement:
    """A standing agreement and its token `agt_…`, which the merchant pays with. Only the token's keyed hash and a
    hint are kept: the caller shows the token once."""
    _require_source(cardholder, card, linked_account)
    _validate_limits(limit_per_payment, limit_per_month, currency)
    _require_active(merchant)
    token = agreement_token_new()
    agreement = Agreement.objects.create(
        token_hash=agreement_token_hash(token),
        token_hint=agreement_token_hint(token),
        cardholder=cardholder,
        merchant=merchant,
        card=card,
        linked_account=linked_account,
        currency=currency,
        limit_per_payment=limit_per_payment,
        limit_per_month=limit_per_month,
    )
    audit_record(
        actor=actor,
        action="agreement.grant",
        obj=agreement,
        after={"merchant": merchant.code, "limit_per_payment": limit_per_payment, "limit_per_month": limit_per_month},
    )
    return GrantedAgreement(agreement=agreement, token=token)


def _validate_limits(
    limit_per_payment: int,
    limit_per_month: int,
    currency: str,
    params: tuple[str, str] = ("limit_per_payment", "limit_per_month"),
) -> None:
    validate_minor_amount(limit_per_payment, currency, param=params[0])
    validate_minor_amount(limit_per_month, currency, param=params[1])
    if limit_per_month < limit_per_payment:
        raise ValidationFailed(
            "The monthly limit cannot be below the limit per payment.", code="invalid_limits", param=params[1]
        )


def _require_active(merchant: Merchant) -> None:
    if merchant.status != Merchant.Status.ACTIVE:
        raise ValidationFailed("This merchant cannot take payments.", code="merchant_inactive", param="merchant")


@transaction.atomic
def agreement_revoke(*, cardholder: Cardholder, agreement_id: str, actor: Any = None) -> Agreement:
    """Ends an agreement: its token is refused from now on, a token not yet collected is wiped, and the merchant hears
    `agreement.revoked` (in the mode of the request it was granted on; live without one). Revoking twice is a no-op."""
    agreement = (
        Agreement.objects.select_for_update(of=("self",))
        .select_related("merchant", "card__bank", "linked_account__bank")
        .filter(public_id=agreement_id, cardholder=cardholder)
        .first()
    )
    if agreement is None:
        raise NotFound("No such agreement.", param="agreement")
    if agreement.revoked_at is None:
        agreement.revoked_at = timezone.now()
        agreement.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="agreement.revoke", obj=agreement)
        request = AgreementRequest.objects.filter(agreement=agreement).first()
        if request is not None and request.token_encrypted:
            AgreementRequest.objects.filter(pk=request.pk).update(token_encrypted="")
        events.agreement_revoked(agreement, livemode=request.livemode if request is not None else True)
    return agreement


def agreement_take(token: str, *, merchant: Merchant, amount: int, currency: str) -> Funding:
    """Checks an agreement for a payment, found by its token's keyed hash, in the caller's transaction (the agreement
    row stays locked until the payment is stored, so racing payments cannot both slip under the monthly limit)."""
    agreement = (
        Agreement.objects.select_for_update(of=("self",))
        .select_related("cardholder", "card__product", "card__bank", "linked_account")
        .filter(token_hash=agreement_token_hash(token), merchant=merchant)
        .first()
    )
    if agreement is None:  # another merchant's token is as unknown as a made-up one
        raise NotFound("No such agreement.", code="agreement_invalid", param="agreement_token")
    if agreement.revoked_at is not None:
        raise ValidationFailed("This agreement has been revoked.", code="agreement_revoked", param="agreement_token")
    if currency != agreement.currency:
        raise ValidationFailed("The agreement is in another currency.", code="currency_mismatch", param="currency")
    if amount > agreement.limit_per_payment:
        raise ValidationFailed(
            f"The agreement allows at most {agreement.limit_per_payment} per payment.",
            code="agreement_limit_exceeded",
            param="amount",
        )
    month_start = local_now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    used = (
        PaymentIntent.objects.filter(agreement=agreement, created_at__gte=month_start)
        .filter(Q(status__in=LIVE_STATUSES) | Q(status=PaymentIntent.Status.REQUIRES_CONFIRMATION))
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    if used + amount > agreement.limit_per_month:
        raise ValidationFailed(
            f"The agreement's monthly limit {agreement.limit_per_month} would be exceeded ({used} used).",
            code="agreement_monthly_limit_exceeded",
            param="amount",
        )
    if agreement.card is not None:
        require_usable_card(agreement.card)
    if agreement.linked_account is not None:
        require_usable_account(agreement.linked_account)
    return Funding(
        agreement.cardholder, agreement.card, agreement.linked_account, PaymentMethod.AGREEMENT, agreement=agreement
    )


# --- agreement requests (the hosted grant flow) -----------------------------------------------------------------------

_http_url = URLValidator(schemes=["http", "https"])


def validate_return_url(url: str) -> str:
    """Where the cardholder is sent back: an absolute http(s) URL, nothing else (no javascript:, data: or relative)."""
    try:
        _http_url(url)
    except ValidationError:
        raise ValidationFailed(
            "return_url must be an absolute http or https URL.", code="invalid_return_url", param="return_url"
        ) from None
    return url


@transaction.atomic
def agreement_request_create(
    *,
    merchant: Merchant,
    livemode: bool,
    currency: str,
    limit_per_payment: int,
    limit_per_month: int,
    purpose: str,
    return_url: str,
    actor: Any = None,
) -> AgreementRequest:
    """A pending request for an agreement within these limits, for the cardholder to answer on the hosted page
    within an hour."""
    _validate_limits(limit_per_payment, limit_per_month, currency, ("limits.per_payment", "limits.per_month"))
    purpose = purpose.strip()
    if not purpose or len(purpose) > 200:
        raise ValidationFailed("purpose is 1 to 200 characters.", code="invalid_purpose", param="purpose")
    validate_return_url(return_url)
    _require_active(merchant)
    request = AgreementRequest.objects.create(
        merchant=merchant,
        livemode=livemode,
        currency=currency,
        limit_per_payment=limit_per_payment,
        limit_per_month=limit_per_month,
        purpose=purpose,
        return_url=return_url,
    )
    audit_record(actor=actor, action="agreement_request.create", obj=request)
    return request


def agreement_request_get(*, merchant: Merchant, livemode: bool, request_id: str) -> AgreementRequest:
    """A merchant's request, of the key's mode; any other is unknown."""
    request = (
        AgreementRequest.objects.select_related("agreement")
        .filter(public_id=request_id, merchant=merchant, livemode=livemode)
        .first()
    )
    if request is None:
        raise NotFound("No such agreement request.", param="id")
    request.merchant = merchant
    return request


def agreement_request_for_page(*, request_id: str) -> AgreementRequest:
    """The request the hosted page shows (any signed-in cardholder may answer a request sent to them)."""
    request = AgreementRequest.objects.select_related("merchant").filter(public_id=request_id).first()
    if request is None:
        raise NotFound("No such agreement request.", code="agreement_request_invalid", param="agreement_request")
    return request


def _request_refused(request: AgreementRequest) -> MengkaError:
    if request.current_status == AgreementRequest.Status.EXPIRED:
        return ValidationFailed(
            "This agreement request has expired: ask the merchant for a new one.",
            code="agreement_request_expired",
            param="agreement_request",
        )
    return Conflict("This agreement request has already been answered.", code="agreement_request_decided")


def _answer(request_id: str, decide: Any) -> AgreementRequest:
    """Locks the request and, while it is pending and unexpired, lets `decide` answer it in the same transaction. An
    expired one is written expired (and stays so) before the refusal is raised."""
    with transaction.atomic():
        request = (
            AgreementRequest.objects.select_for_update(of=("self",))
            .select_related("merchant")
            .filter(public_id=request_id)
            .first()
        )
        if request is None:
            raise NotFound("No such agreement request.", code="agreement_request_invalid", param="agreement_request")
        expired = request.status == AgreementRequest.Status.PENDING and request.current_status != request.status
        if expired:
            request.status = AgreementRequest.Status.EXPIRED
            request.save(update_fields=["status"])
        elif request.status == AgreementRequest.Status.PENDING:
            decide(request)
            return request
    raise _request_refused(request)


def agreement_request_grant(
    *,
    cardholder: Cardholder,
    request_id: str,
    card: Card | None = None,
    linked_account: LinkedAccount | None = None,
    actor: Any = None,
) -> AgreementRequest:
    """The cardholder grants the request with one of their cards or linked accounts: in one transaction the agreement
    is made (`agreement_grant`), its token kept encrypted on the request for the merchant to collect once, the request
    marked granted, and `agreement.granted` (without the token) written in the request's mode."""

    def grant(request: AgreementRequest) -> None:
        granted = agreement_grant(
            cardholder=cardholder,
            merchant=request.merchant,
            card=card,
            linked_account=linked_account,
            currency=request.currency,
            limit_per_payment=request.limit_per_payment,
            limit_per_month=request.limit_per_month,
            actor=actor,
        )
        request.agreement = granted.agreement
        request.token_encrypted = encrypt(granted.token)
        request.status = AgreementRequest.Status.GRANTED
        request.decided_at = timezone.now()
        request.save(update_fields=["agreement", "token_encrypted", "status", "decided_at"])
        audit_record(actor=actor, action="agreement_request.grant", obj=request)
        events.agreement_granted(granted.agreement, livemode=request.livemode)

    return _answer(request_id, grant)


def agreement_request_decline(*, cardholder: Cardholder, request_id: str, actor: Any = None) -> AgreementRequest:
    """The cardholder declines: the request is closed and no agreement is made."""

    def decline(request: AgreementRequest) -> None:
        request.status = AgreementRequest.Status.DECLINED
        request.decided_at = timezone.now()
        request.save(update_fields=["status", "decided_at"])
        audit_record(actor=actor, action="agreement_request.decline", obj=request)

    return _answer(request_id, decline)


def agreement_collect(
    *, merchant: Merchant, livemode: bool, agreement_id: str, actor: Any = None
) -> tuple[Agreement, str | None]:
    """A merchant's agreement and, on the first read after its grant only, its token.

    A key sees the agreements granted on requests of its mode (one granted in the portal, without a request, is
    live). The token leaves by a guarded UPDATE that empties the request's `token_encrypted` only while it still
    holds the value read: of racing reads, only the one whose UPDATE changed the row returns the token."""
    mode = Q(request__livemode=livemode) | Q(request__isnull=True) if livemode else Q(request__livemode=False)
    agreement = (
        Agreement.objects.select_related("card__bank", "linked_account__bank")
        .filter(mode, public_id=agreement_id, merchant=merchant)
        .first()
    )
    if agreement is None:
        raise NotFound("No such agreement.", param="id")
    agreement.merchant = merchant
    sealed = (
        AgreementRequest.objects.filter(agreement=agreement, livemode=livemode)
        .exclude(token_encrypted="")
        .values_list("pk", "token_encrypted")
        .first()
    )
    if sealed is None or agreement.revoked_at is not None:
        return agreement, None
    request_pk, token_encrypted = sealed
    with transaction.atomic():
        wiped = AgreementRequest.objects.filter(pk=request_pk, token_encrypted=token_encrypted).update(
            token_encrypted=""
        )
        if not wiped:  # another read collected it first
            return agreement, None
        audit_record(actor=actor, action="agreement.token_collect", obj=agreement)
    return agreement, decrypt(token_encrypted)
