"""The benefits catalogue (权益共享): checking and publishing a benefit, pricing a redemption, and redeeming one into a
voucher.

Publishing goes through the maker-checker mechanism (`core.approvals`, kind "rewards.benefit_publish"): an operator of
the responsible bank asks to publish a draft, saying why; a second operator of that bank, or an alliance operator,
approves it in the approval queue and the benefit is published in the approval's transaction. The request remembers
the draft's version (when it was last edited): a benefit edited since is refused at approval.

A redemption is one database transaction, in this lock order: the quota counters (guarded increments of counter
rows), the ledger accounts (one `points_redeem` per programme paid with), the new voucher, and last the benefit's row
(a guarded `UPDATE` takes one unit of stock). The benefit's row is the one every redemption of a popular benefit
queues on, so it is taken last and held only until the commit; every path that locks it with other rows (cancelling,
expiry) takes it last too, so none of them deadlock. Nothing is counted after the fact: a sold-out benefit or a spent
quota refuses the redemption and rolls all of it back. See docs/benefits.md.
"""

from __future__ import annotations

import datetime as dt
import secrets
from base64 import b32encode
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from psycopg2 import sql

from core.approvals import ApprovalKind, approval_request
from core.audit import audit_record
from core.crypto import encrypt, keyed_hash
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest
from core.scoping import operator_scope
from core.text import id_or_none
from members.models import BindingStatus, Card, CardProduct, PointsProgram

from ..models import Benefit, BenefitQuotaUse, OwnerKind, QuotaKind, Voucher, VoucherPayment
from .lots import today
from .obligations import Party, points_value_units, units_cny
from .posting import Actor, check_key, replay, request_hash, retry_on_conflict
from .redeem import points_redeem

BENEFIT_PUBLISH = "rewards.benefit_publish"
PUBLISH_PERMISSION = "rewards.change_benefit"  # who edits a bank's benefits asks to publish them, or approves
CODE_PURPOSE = "voucher-code"
CODE_LENGTH = 16  # base32 characters: 80 random bits


# --- the catalogue ---------------------------------------------------------------------------------------------------


def benefit_check(
    *,
    bank_id: int | None,
    funding_merchant: Any,
    kind: str,
    pricing: str,
    price_program: PointsProgram | None,
    price_points: int | None,
    price_cny_units: int | None,
    merchant: Any,
    stores: Any = (),
    valid_from: dt.datetime | None,
    valid_until: dt.datetime | None,
) -> None:
    """Refuses a benefit whose parts do not fit together (the admin form shows the refusal next to its field)."""
    if funding_merchant is not None and funding_merchant.sponsor_bank_id != bank_id:
        raise ValidationFailed(
            _("A merchant's benefit is answered for by its sponsor bank."), code="benefit_bank", param="bank"
        )
    if pricing == Benefit.Pricing.POINTS and (price_program is None or not price_points):
        raise ValidationFailed(_("Name the programme and the points it costs."), param="price_points")
    if pricing == Benefit.Pricing.CNY and not price_cny_units:
        raise ValidationFailed(_("Give the CNY value it costs."), param="price_cny_units")
    if pricing != Benefit.Pricing.POINTS and (price_program is not None or price_points):
        raise ValidationFailed(_("Only a benefit priced in points names a programme."), param="price_program")
    if pricing != Benefit.Pricing.CNY and price_cny_units:
        raise ValidationFailed(_("Only a benefit priced in CNY has a CNY price."), param="price_cny_units")
    if kind == Benefit.Kind.VOUCHER and merchant is None:
        raise ValidationFailed(_("A merchant voucher names the merchant that redeems it."), param="merchant")
    for store in stores or ():
        if merchant is None or store.merchant_id != merchant.pk:
            raise ValidationFailed(_("Every store must be one of the redeeming merchant's."), param="stores")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ValidationFailed(_("The validity window must end after it starts."), param="valid_until")


def _operator_of(benefit: Benefit, operator: Actor) -> None:
    if operator is None or not operator_scope(operator).can_write(benefit.bank_id):
        raise PermissionDenied(_("Only an operator of the responsible bank may do this."))


def benefit_version(benefit: Benefit) -> str:
    """What a publication request remembers of the draft it asks about: when it was last edited (UTC)."""
    return benefit.updated_at.astimezone(dt.UTC).isoformat()


def _locked(benefit_id: Any) -> Benefit:
    # NO KEY UPDATE: only the status changes, so the key-share locks that redemptions' inserts (quota counters,
    # vouchers) take on the row through their foreign keys neither wait for this nor make it wait.
    pk = id_or_none(str(benefit_id))
    benefit = None if pk is None else Benefit.objects.select_for_update(no_key=True).filter(pk=pk).first()
    if benefit is None:
        raise NotFound(_("No such benefit."), param="benefit")
    return benefit


def _in_state(benefit: Benefit, status: str) -> None:
    if benefit.status != status:
        raise Conflict(_("The benefit is %(status)s.") % {"status": benefit.get_status_display()}, code="benefit_state")


def _unchanged(benefit: Benefit, version: Any) -> None:
    if version is not None and version != benefit_version(benefit):
        raise Conflict(
            _("The benefit was edited after publishing was requested: ask again for the benefit as it is now."),
            code="benefit_changed",
            param="benefit",
        )


def _move(benefit: Benefit, operator: Actor, *, to: str, audit: dict[str, Any] | None = None, **fields: Any) -> None:
    """Moves a locked benefit to `to`, audited, inside the caller's transaction."""
    before = benefit.status
    benefit.status = to
    for name, value in fields.items():
        setattr(benefit, name, value)
    benefit.save(update_fields=["status", "updated_at", *fields])
    audit_record(
        actor=operator,
        action=f"benefit.{to}",
        obj=benefit,
        before={"status": before},
        after={"status": to, **(audit or {})},
        object_banks={benefit.bank_id},
    )


# --- publishing, through the approval queue (`core.approvals`, kind "rewards.benefit_publish") ----------------------


def benefit_publish_requests_pending(benefit_id: int) -> models.QuerySet[ApprovalRequest]:
    """The requests to publish this benefit still waiting in the approval queue (at most one)."""
    return ApprovalRequest.objects.filter(
        kind=BENEFIT_PUBLISH,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
        payload__benefit_id=benefit_id,
    )


def publish_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a publication request: the benefit and the version of the draft asked about. Run when asked and
    again when approved (the request itself is then no longer pending): still a draft, not edited since, and no other
    request for it waiting."""
    benefit = _locked(payload.get("benefit_id"))
    _in_state(benefit, Benefit.Status.DRAFT)
    _unchanged(benefit, payload.get("version"))
    if benefit_publish_requests_pending(benefit.pk).exists():
        raise Conflict(
            _("A request to publish this benefit is already waiting for approval."),
            code="benefit_publish_pending",
            param="benefit",
        )
    return {"benefit_id": benefit.pk, "version": benefit_version(benefit)}


def publish_bank(payload: dict[str, Any]) -> int | None:
    """The responsible bank checks: the contributing bank, or the contributing merchant's sponsor bank."""
    return Benefit.objects.values_list("bank_id", flat=True).get(pk=payload["benefit_id"])


def publish_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    pk = id_or_none(str(payload.get("benefit_id")))
    benefit = None if pk is None else Benefit.objects.select_related("bank", "price_program").filter(pk=pk).first()
    if benefit is None:
        return [(_("benefit"), f"#{payload.get('benefit_id')}")]
    if benefit.pricing == Benefit.Pricing.POINTS and benefit.price_program is not None:
        price = f"{benefit.price_points:,} {benefit.price_program.unit_code}"
    elif benefit.pricing == Benefit.Pricing.CNY and benefit.price_cny_units:
        price = f"CNY {units_cny(benefit.price_cny_units)}"
    else:
        price = str(benefit.get_pricing_display())
    edited = "" if payload.get("version") == benefit_version(benefit) else " · " + _("edited since the request")
    return [
        (_("benefit"), f"#{benefit.pk} {benefit}"),
        (_("responsible bank"), str(benefit.bank)),
        (_("price"), price),
        (_("stock"), str(benefit.stock_total) if benefit.stock_total is not None else _("unlimited")),
        (_("valid"), f"{benefit.valid_from:%Y-%m-%d} – {benefit.valid_until:%Y-%m-%d}"),
        (_("status"), f"{benefit.get_status_display()}{edited}"),
    ]


@transaction.atomic
def benefit_request_publish(*, benefit_id: int, operator: Any, reason: str) -> ApprovalRequest:
    """Asks to publish a draft (the maker); it is published once a second operator of the responsible bank, or an
    alliance operator, approves the request in the approval queue (`core.approvals.approval_approve`)."""
    benefit = _locked(benefit_id)  # one request at a time per benefit: asking takes the benefit's lock
    if operator is None or not getattr(operator, "pk", None):
        raise PermissionDenied(_("An operator asks to publish a benefit."), code="operator_required")
    _operator_of(benefit, operator)
    if not operator.has_perm(PUBLISH_PERMISSION):
        raise PermissionDenied(_("Your role may not ask to publish a benefit."), code="publish_not_allowed")
    payload = {"benefit_id": benefit.pk, "version": benefit_version(benefit)}
    return approval_request(kind=BENEFIT_PUBLISH, payload=payload, reason=reason, maker=operator)


def benefit_publish_apply(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> Benefit:
    """Draft → published (the kind's `apply`, inside the approval's transaction, after `publish_validate`): checked
    again under the benefit's lock, so an edit that slipped in between is refused too."""
    benefit = _locked(payload["benefit_id"])
    _operator_of(benefit, checker)
    _in_state(benefit, Benefit.Status.DRAFT)
    _unchanged(benefit, payload.get("version"))
    _move(benefit, checker, to=Benefit.Status.PUBLISHED, audit={"requested_by": maker.pk}, published_at=timezone.now())
    return benefit


@transaction.atomic
def benefit_withdraw(*, benefit_id: int, operator: Actor) -> Benefit:
    """Published → withdrawn: no new redemptions; vouchers already issued stay valid."""
    benefit = _locked(benefit_id)
    _operator_of(benefit, operator)
    _in_state(benefit, Benefit.Status.PUBLISHED)
    _move(benefit, operator, to=Benefit.Status.WITHDRAWN)
    return benefit


BENEFIT_PUBLISH_KIND = ApprovalKind(
    code=BENEFIT_PUBLISH,
    label=gettext_lazy("Publish a benefit"),
    permission=PUBLISH_PERMISSION,
    validate=publish_validate,
    bank_of=publish_bank,
    apply=benefit_publish_apply,
    describe=publish_describe,
)


def funder_of(benefit: Benefit) -> Party:
    if benefit.funding_merchant_id is not None:
        return Party(OwnerKind.MERCHANT, benefit.funding_merchant_id)
    return Party(OwnerKind.BANK, benefit.bank_id)


# --- eligibility -----------------------------------------------------------------------------------------------------


def card_eligible(benefit: Benefit, card: Card) -> bool:
    """The card's bank, product and tier are among the benefit's (an empty list allows all). Uses the benefit's
    prefetched `eligible_banks` and `eligible_products` when present."""
    return product_eligible(benefit, card.product)


def product_eligible(benefit: Benefit, product: CardProduct) -> bool:
    """A card of this product may take the benefit: its bank, the product and its tier are among the benefit's (an
    empty list allows all). Uses the benefit's prefetched `eligible_banks` and `eligible_products` when present."""
    banks = {bank.pk for bank in benefit.eligible_banks.all()}
    products = {eligible.pk for eligible in benefit.eligible_products.all()}
    return (
        (not banks or product.bank_id in banks)
        and (not products or product.pk in products)
        and (not benefit.eligible_tiers or product.tier in benefit.eligible_tiers)
    )


def on_offer(benefit: Benefit, now: dt.datetime) -> bool:
    return benefit.status == Benefit.Status.PUBLISHED and benefit.valid_from <= now < benefit.valid_until


def quota_periods(day: dt.date) -> dict[str, str]:
    return {QuotaKind.HOLDER_MONTH: day.strftime("%Y-%m"), QuotaKind.HOLDER_YEAR: day.strftime("%Y")}


def quota_limits(benefit: Benefit) -> dict[str, int | None]:
    return {
        QuotaKind.HOLDER_MONTH: benefit.limit_per_month,
        QuotaKind.HOLDER_YEAR: benefit.limit_per_year,
        QuotaKind.CARD: benefit.limit_per_card,
    }


# --- pricing ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteLine:
    program_id: int
    unit: str
    points: int
    value_units: int  # what these points are worth in CNY ten-thousandths (rounded half-up, as the ledger posts it)


@dataclass(frozen=True)
class BenefitQuote:
    benefit_id: int
    pricing: str
    price_points: int | None
    price_cny_units: int | None
    lines: list[QuoteLine]

    @property
    def total_value_units(self) -> int:
        return sum(line.value_units for line in self.lines)

    @property
    def points(self) -> dict[int, int]:
        return {line.program_id: line.points for line in self.lines}


def _programs(ids: list[int]) -> dict[int, PointsProgram]:
    programs = PointsProgram.objects.filter(pk__in=ids, active=True).in_bulk()
    missing = [pid for pid in ids if pid not in programs]
    if missing:
        raise ValidationFailed(_("No such active points programme: %(id)s.") % {"id": missing[0]}, param="points")
    return programs


def benefit_price(*, benefit: Benefit, points: dict[int, int | None]) -> BenefitQuote:
    """What each programme pays for `benefit`, checked exactly in integer points. `points`: programme id → points, or
    None for the one programme (at most one) that pays the rest of a CNY price.

    - points of one programme: exactly {that programme: the price};
    - a CNY value: any active programmes; their points' exact worth (points × point value) must cover the price, and
      no programme may pay a whole point more than needed (so the rest is rounded up, never more than one point);
    - free: no points.
    Raises `ValidationFailed` (param "points") otherwise."""
    bad = [pid for pid, n in points.items() if n is not None and (not isinstance(n, int) or n <= 0)]
    if bad:
        raise ValidationFailed(_("Every programme pays a positive whole number of points."), param="points")
    if benefit.pricing == Benefit.Pricing.FREE:
        if points:
            raise ValidationFailed(_("This benefit is free for eligible cards: pay no points."), param="points")
        return BenefitQuote(benefit.pk, benefit.pricing, None, None, [])
    if benefit.pricing == Benefit.Pricing.POINTS:
        assert benefit.price_points is not None
        assert benefit.price_program_id is not None
        wanted = {benefit.price_program_id: benefit.price_points}
        if {pid: (benefit.price_points if n is None else n) for pid, n in points.items()} != wanted:
            raise ValidationFailed(
                _("This benefit costs %(points)s points of one programme.") % {"points": benefit.price_points},
                code="price_mismatch",
                param="points",
            )
        program = _programs([benefit.price_program_id])[benefit.price_program_id]
        line = QuoteLine(
            program.pk, program.unit_code, benefit.price_points, points_value_units(benefit.price_points, program)
        )
        return BenefitQuote(benefit.pk, benefit.pricing, benefit.price_points, None, [line])
    assert benefit.price_cny_units is not None
    if not points:
        raise ValidationFailed(_("Choose at least one programme to pay with."), param="points")
    rest = [pid for pid, n in points.items() if n is None]
    if len(rest) > 1:
        raise ValidationFailed(_("Only one programme can pay the rest."), param="points")
    programs = _programs(list(points))
    price = units_cny(benefit.price_cny_units)
    chosen = {pid: n for pid, n in points.items() if n is not None}
    worth = sum((Decimal(n) * programs[pid].point_value_cny for pid, n in chosen.items()), Decimal(0))
    if rest:
        value = programs[rest[0]].point_value_cny
        if worth >= price:
            raise ValidationFailed(_("The other programmes already pay the whole price."), param="points")
        chosen[rest[0]] = int(((price - worth) / value).to_integral_value(rounding=ROUND_CEILING))
        worth += chosen[rest[0]] * value
    if worth < price:
        raise ValidationFailed(_("These points do not cover the price."), code="price_not_covered", param="points")
    if any(worth - programs[pid].point_value_cny >= price for pid in chosen):
        raise ValidationFailed(_("These points pay more than the price."), code="price_exceeded", param="points")
    lines = [
        QuoteLine(pid, programs[pid].unit_code, n, points_value_units(n, programs[pid]))
        for pid, n in sorted(chosen.items())
    ]
    return BenefitQuote(benefit.pk, benefit.pricing, None, benefit.price_cny_units, lines)


# --- redemption ------------------------------------------------------------------------------------------------------


def new_code() -> str:
    return b32encode(secrets.token_bytes(10)).decode()  # 16 characters of A–Z and 2–7


def normalise_code(code: str) -> str | None:
    """The code as issued (upper case, without the spaces and dashes it is shown with); None when it cannot be one."""
    text = code.replace("-", "").replace(" ", "").upper()
    if len(text) != CODE_LENGTH or any(ch not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for ch in text):
        return None
    return text


def code_hash(code: str) -> str:
    return keyed_hash(code, purpose=CODE_PURPOSE)


def _take_stock(benefit: Benefit, cost_units: int) -> None:
    """One unit of stock: a guarded UPDATE on the benefit's row, where concurrent redemptions queue. The last write
    of a redemption, so the row stays locked only until the commit."""
    taken = (
        Benefit.objects.filter(pk=benefit.pk, status=Benefit.Status.PUBLISHED)
        .filter(Q(stock_left__isnull=True) | Q(stock_left__gt=0))
        .update(
            stock_left=F("stock_left") - 1,
            redeemed_count=F("redeemed_count") + 1,
            cost_units=F("cost_units") + cost_units,
        )
    )
    if not taken:
        raise _sold_out()


def _sold_out() -> Conflict:
    return Conflict(_("This benefit is sold out."), code="benefit_sold_out", param="benefit")


_QUOTA_TAKE = sql.SQL(
    "INSERT INTO {table} (benefit_id, kind, owner_id, period, used) VALUES (%s, %s, %s, %s, 1)"
    " ON CONFLICT (benefit_id, kind, owner_id, period) DO UPDATE SET used = {table}.used + 1"
    " WHERE {table}.used < %s RETURNING used"
)


def _take_quota(benefit: Benefit, kind: str, owner_id: int, period: str, limit: int) -> None:
    """A guarded increment of one counter row: raised only while below `limit`, else nothing changes."""
    taken = False
    if limit > 0:
        with connection.cursor() as cursor:
            cursor.execute(
                _QUOTA_TAKE.format(table=sql.Identifier(BenefitQuotaUse._meta.db_table)),
                [benefit.pk, kind, owner_id, period, limit],
            )
            taken = cursor.fetchone() is not None
    if not taken:
        raise Conflict(
            _("You have used this benefit's allowance (%(quota)s).") % {"quota": QuotaKind(kind).label},
            code="benefit_quota_exhausted",
            param="benefit",
        )


def quota_release(*, benefit_id: int, kind: str, owner_id: int, period: str) -> None:
    BenefitQuotaUse.objects.filter(
        benefit_id=benefit_id, kind=kind, owner_id=owner_id, period=period, used__gt=0
    ).update(used=F("used") - 1)


@retry_on_conflict
def benefit_redeem(
    *,
    cardholder_id: int,
    card_id: int,
    benefit_id: int,
    points: dict[int, int | None],
    idempotency_key: str,
    actor: Actor = None,
) -> Voucher:
    """Redeems a benefit with one of the cardholder's cards, paying `points` (programme id → points; see
    `benefit_price`), and issues a voucher. One transaction: stock, quotas, points (with the obligation to the funder
    when another party funds the benefit) and the voucher stand or fall together. Idempotent per `idempotency_key`: a
    replay returns the first voucher; the key with another request is an `IdempotencyConflict`."""
    check_key(idempotency_key)
    digest = request_hash(
        op="benefit_redeem",
        cardholder=cardholder_id,
        card=card_id,
        benefit=benefit_id,
        points=sorted([pid, n] for pid, n in points.items()),
    )
    existing = replay(Voucher, idempotency_key, digest)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return _redeem(cardholder_id, card_id, benefit_id, points, idempotency_key, digest, actor)
    except IntegrityError:
        existing = replay(Voucher, idempotency_key, digest)
        if existing is None:
            raise
        return existing


def _redeem(
    cardholder_id: int,
    card_id: int,
    benefit_id: int,
    points: dict[int, int | None],
    key: str,
    digest: str,
    actor: Actor,
) -> Voucher:
    now, day = timezone.now(), today()
    benefit = (
        Benefit.objects.select_related("price_program")
        .prefetch_related("eligible_banks", "eligible_products")
        .filter(pk=benefit_id)
        .first()
    )
    if benefit is None or benefit.status not in (Benefit.Status.PUBLISHED, Benefit.Status.WITHDRAWN):
        raise NotFound(_("No such benefit."), param="benefit")
    if not on_offer(benefit, now):
        raise Conflict(_("This benefit is not on offer now."), code="benefit_not_on_offer", param="benefit")
    card = Card.objects.select_related("product").filter(pk=card_id, cardholder_id=cardholder_id).first()
    if card is None:
        raise NotFound(_("No such card."), param="card")
    if card.status != BindingStatus.ACTIVE or not card_eligible(benefit, card):
        raise ValidationFailed(_("This card is not eligible for this benefit."), code="card_not_eligible", param="card")
    quote = benefit_price(benefit=benefit, points=points)
    if benefit.stock_left == 0:  # as read: refused before writing anything; the guarded UPDATE below decides
        raise _sold_out()

    periods = quota_periods(day)
    for kind, limit in quota_limits(benefit).items():
        if limit is not None:
            owner = card.pk if kind == QuotaKind.CARD else cardholder_id
            _take_quota(benefit, kind, owner, periods.get(kind, ""), limit)

    funder = funder_of(benefit)
    programs = PointsProgram.objects.in_bulk([line.program_id for line in quote.lines])
    spent = []
    for line in quote.lines:
        program = programs[line.program_id]
        payer = Party(OwnerKind.BANK, program.bank_id)
        spent.append(
            points_redeem(
                cardholder_id=cardholder_id,
                program=program,
                amount=line.points,
                idempotency_key=f"benefit:{key}:{program.pk}",
                pays_to=funder if funder != payer else None,
                actor=actor,
                metadata={"benefit_id": benefit.pk},
            )
        )
    code = new_code()
    voucher = Voucher.objects.create(
        benefit=benefit,
        cardholder_id=cardholder_id,
        card=card,
        code_hash=code_hash(code),
        code_encrypted=encrypt(code),
        code_hint=code[-4:],
        idempotency_key=key,
        request_hash=digest,
        points={str(pid): n for pid, n in quote.points.items()},
        cost_units=quote.total_value_units,
        month=periods[QuotaKind.HOLDER_MONTH],
        issued_at=now,
        expires_at=now + dt.timedelta(days=benefit.voucher_valid_days),
    )
    VoucherPayment.objects.bulk_create(
        VoucherPayment(
            voucher=voucher,
            program_id=line.program_id,
            points=line.points,
            value_units=line.value_units,
            transaction=txn,
            transaction_created_at=txn.created_at,
        )
        for line, txn in zip(quote.lines, spent, strict=True)
    )
    _take_stock(benefit, quote.total_value_units)  # last: see the module's docstring
    return voucher


def voucher_grant(*, benefit_id: int, cardholder_id: int, card_id: int, idempotency_key: str) -> Voucher:
    """Gives a cardholder a voucher of a benefit without points: a merchant's promotion rewarding them (the
    merchant funds it). Takes one unit of stock like a redemption, ignores the card-eligibility and quota rules
    (the promotion's own conditions chose the cardholder); idempotent per key. Call it inside a transaction."""
    check_key(idempotency_key)
    digest = request_hash(op="voucher_grant", cardholder=cardholder_id, card=card_id, benefit=benefit_id)
    existing = replay(Voucher, idempotency_key, digest)
    if existing is not None:
        return existing
    benefit = Benefit.objects.filter(pk=benefit_id, status=Benefit.Status.PUBLISHED).first()
    if benefit is None:
        raise NotFound(_("No such benefit."), param="benefit")
    now = timezone.now()
    code = new_code()
    voucher = Voucher.objects.create(
        benefit=benefit,
        cardholder_id=cardholder_id,
        card_id=card_id,
        code_hash=code_hash(code),
        code_encrypted=encrypt(code),
        code_hint=code[-4:],
        idempotency_key=idempotency_key,
        request_hash=digest,
        points={},
        cost_units=0,
        month=quota_periods(today())[QuotaKind.HOLDER_MONTH],
        issued_at=now,
        expires_at=now + dt.timedelta(days=benefit.voucher_valid_days),
    )
    _take_stock(benefit, 0)
    return voucher
