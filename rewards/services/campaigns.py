"""A merchant's promotions as the merchant manages them: create, update, pause, resume, end — each one transaction,
checked whole by `promotion_check`, audited. Pricing and budgets are the engine's (`promotions`).

Every change saves the promotion's row after its store and card lists, so the engine's compiled rules (cached by the
row's `updated_at`) are read again. Changes to one merchant's promotions queue on the merchant's row (locked
`FOR NO KEY UPDATE`, which payments' foreign-key checks never wait for), so the segment rule below is checked
against a settled set.

References from outside: stores by their code (this merchant's, of the promotion's mode), card banks by bank code,
card products as "BANK/CODE" (the bank's code and the product's), the co-funding bank by its code, the frequency
reward's voucher by the benefit's id.

The segment rule (PIPL: a non-personalised choice always exists): a promotion with segment tags is active only while
an active promotion of the same merchant and mode without segment tags (and not waiting for, or refused, co-funding)
covers its window — from its start (or now, once it has started) to its end. Creating or resuming a targeted
promotion without such a cover, and pausing, ending or changing the last cover while a targeted promotion relies on
it, are refused (409); the merchant pauses the targeted promotions first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record, snapshot
from core.errors import Conflict, ValidationFailed
from core.money import MAX_MINOR_AMOUNT, exponent
from members.models import CardProduct, MemberBank, SpendCategory
from merchants.models import Merchant, Store

from ..models import Benefit, Promotion

Kind = Promotion.Kind
Status = Promotion.Status
Cofunding = Promotion.Cofunding

# The methods a payment is made by (the engine's `Context.method`); rewards never imports payments.
METHODS = ("card", "payment_code", "agreement", "balance")
BENEFIT_FIELDS = (
    "amount_off",
    "percent_off",
    "max_discount",
    "multiplier",
    "random_min",
    "random_max",
    "random_mean",
    "cashback_rate",
    "frequency_count",
    "reward_benefit",
)
KIND_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (required, optional)
    Kind.AMOUNT_OFF: (("amount_off",), ()),
    Kind.PERCENT_OFF: (("percent_off",), ("max_discount",)),
    Kind.POINTS_MULTIPLIER: (("multiplier",), ()),
    Kind.RANDOM_OFF: (("random_min", "random_max"), ("random_mean",)),
    Kind.CASHBACK_POINTS: (("cashback_rate",), ()),
    Kind.FREQUENCY_REWARD: (("frequency_count", "reward_benefit"), ()),
}
# Points are valued in CNY, and so is a frequency reward's voucher: these kinds take CNY payments only.
CNY_ONLY = frozenset({Kind.POINTS_MULTIPLIER, Kind.CASHBACK_POINTS, Kind.FREQUENCY_REWARD})
CONDITION_FIELDS = (
    "min_spend",
    "stores",
    "categories",
    "card_banks",
    "card_products",
    "card_tiers",
    "methods",
    "weekdays",
    "hour_from",
    "hour_to",
    "first_purchase",
    "segment_tags",
)
LIMIT_FIELDS = ("max_uses", "per_cardholder_daily", "per_cardholder")
FIELDS = (
    "name",
    "description",
    "kind",
    "currency",
    *BENEFIT_FIELDS,
    *CONDITION_FIELDS,
    "budget",
    *LIMIT_FIELDS,
    "stacking",
    "priority",
    "starts_at",
    "ends_at",
    "cofunder",
    "cofunder_share",
)
FIXED = ("kind", "currency")
DEFAULTS: dict[str, Any] = {
    "description": "",
    "currency": "CNY",
    **dict.fromkeys(BENEFIT_FIELDS),
    "min_spend": 0,
    "stores": [],
    "categories": [],
    "card_banks": [],
    "card_products": [],
    "card_tiers": [],
    "methods": [],
    "weekdays": [],
    "hour_from": None,
    "hour_to": None,
    "first_purchase": False,
    "segment_tags": [],
    **dict.fromkeys(LIMIT_FIELDS),
    "stacking": Promotion.Stacking.EXCLUSIVE,
    "priority": 0,
    "cofunder": None,
    "cofunder_share": None,
}
MAX_COUNT = 2**31 - 1
MAX_TAGS = 20
MAX_LIST = 100


@dataclass(frozen=True)
class Checked:
    """A promotion's values, checked: the row's columns, and what its lists and references resolve to."""

    columns: dict[str, Any]
    stores: list[Store]
    card_banks: list[MemberBank]
    card_products: list[CardProduct]


def _refuse(message: str, param: str, code: str = "validation_failed") -> ValidationFailed:
    return ValidationFailed(message, code=code, param=param)


def _count(values: Mapping[str, Any], name: str, *, least: int, most: int = MAX_COUNT) -> None:
    value = values.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        message = _("%(field)s must be a whole number from %(least)s to %(most)s.")
        raise _refuse(message % {"field": name, "least": least, "most": most}, name)


def _amount(values: Mapping[str, Any], name: str, *, least: int = 1) -> None:
    _count(values, name, least=least, most=MAX_MINOR_AMOUNT)


def _decimal(values: Mapping[str, Any], name: str, *, above: Decimal, most: Decimal, below: bool = False) -> None:
    value = values.get(name)
    if value is None:
        return
    if (
        not isinstance(value, Decimal)
        or not value.is_finite()
        or value <= above
        or value > most
        or (below and value >= most)
    ):
        if below:
            message = _("%(field)s must be above %(above)s and below %(most)s.")
        else:
            message = _("%(field)s must be above %(above)s and at most %(most)s.")
        raise _refuse(message % {"field": name, "above": above, "most": most}, name)


def _choices(values: Mapping[str, Any], name: str, allowed: Iterable[Any]) -> list[Any]:
    given = values.get(name) or []
    if not isinstance(given, list) or len(given) > MAX_LIST:
        raise _refuse(_("%(field)s must be a list.") % {"field": name}, name)
    allowed = list(allowed)
    for item in given:
        if isinstance(item, bool) or item not in allowed:
            raise _refuse(
                _("%(value)s is not one of %(allowed)s.") % {"value": item, "allowed": ", ".join(map(str, allowed))},
                name,
            )
    return sorted(set(given), key=allowed.index)


def _codes(values: Mapping[str, Any], name: str) -> list[str]:
    given = values.get(name) or []
    if not isinstance(given, list) or len(given) > MAX_LIST or not all(isinstance(code, str) for code in given):
        raise _refuse(_("%(field)s must be a list of codes.") % {"field": name}, name)
    return sorted(set(given))


def _resolved(found: dict[str, Any], codes: list[str], name: str, message: str) -> list[Any]:
    for code in codes:
        if code not in found:
            raise _refuse(message % {"code": code}, name, code="unknown_reference")
    return [found[code] for code in codes]


def _kind(values: Mapping[str, Any]) -> str:
    kind = values.get("kind")
    if kind not in Kind.values:
        raise _refuse(_("kind must be one of %(kinds)s.") % {"kinds": ", ".join(Kind.values)}, "kind")
    currency = values.get("currency")
    if not isinstance(currency, str):
        raise _refuse(_("Give the currency."), "currency")
    exponent(currency)  # an ISO code payments accept
    if kind in CNY_ONLY and currency != "CNY":
        raise _refuse(
            _("A %(kind)s promotion is for CNY payments only: points and vouchers are valued in CNY.") % {"kind": kind},
            "currency",
            code="currency_not_supported",
        )
    required, optional = KIND_FIELDS[kind]
    for name in required:
        if values.get(name) is None:
            raise _refuse(_("A %(kind)s promotion needs %(field)s.") % {"kind": kind, "field": name}, name)
    for name in BENEFIT_FIELDS:
        if name not in required + optional and values.get(name) is not None:
            raise _refuse(
                _("%(field)s is not part of a %(kind)s promotion.") % {"field": name, "kind": kind},
                name,
                code="field_not_for_kind",
            )
    return str(kind)


def _benefit(values: Mapping[str, Any], kind: str) -> None:
    if kind == Kind.AMOUNT_OFF:
        _amount(values, "amount_off")
    elif kind == Kind.PERCENT_OFF:
        _decimal(values, "percent_off", above=Decimal(0), most=Decimal(100), below=True)
        _amount(values, "max_discount")
    elif kind == Kind.POINTS_MULTIPLIER:
        _decimal(values, "multiplier", above=Decimal(1), most=Decimal(1000))
    elif kind == Kind.RANDOM_OFF:
        for name in ("random_min", "random_max", "random_mean"):
            _amount(values, name, least=0)
        low, high, mean = values["random_min"], values["random_max"], values.get("random_mean")
        if high <= low:
            raise _refuse(_("random_max must be above random_min."), "random_max")
        if mean is not None and not low <= mean < high:
            raise _refuse(_("random_mean must be from random_min up to, not including, random_max."), "random_mean")
    elif kind == Kind.CASHBACK_POINTS:
        _decimal(values, "cashback_rate", above=Decimal(0), most=Decimal(1))
    else:
        _count(values, "frequency_count", least=2, most=1000)


def _reward_benefit(merchant: Merchant, benefit_id: Any) -> Benefit | None:
    if benefit_id is None:
        return None
    benefit = None
    if isinstance(benefit_id, int) and not isinstance(benefit_id, bool):
        benefit = (
            Benefit.objects.filter(pk=benefit_id, status=Benefit.Status.PUBLISHED)
            .filter(Q(merchant=merchant) | Q(funding_merchant=merchant))
            .first()
        )
    if benefit is None:
        raise _refuse(
            _("reward_benefit must be a published benefit you offer (redeemed at or funded by you)."),
            "reward_benefit",
            code="unknown_reference",
        )
    return benefit


def _schedule(values: Mapping[str, Any], *, now: dt.datetime, ends_changed: bool) -> None:
    starts, ends = values.get("starts_at"), values.get("ends_at")
    if not isinstance(starts, dt.datetime) or timezone.is_naive(starts):
        raise _refuse(_("Give when the promotion starts."), "starts_at")
    if not isinstance(ends, dt.datetime) or timezone.is_naive(ends):
        raise _refuse(_("Give when the promotion ends."), "ends_at")
    if ends <= starts:
        raise _refuse(_("ends_at must be after starts_at."), "ends_at")
    if ends_changed and ends <= now:
        raise _refuse(_("ends_at must be in the future."), "ends_at")


def _hours(values: Mapping[str, Any]) -> None:
    _count(values, "hour_from", least=0, most=23)
    _count(values, "hour_to", least=1, most=24)
    start, end = values.get("hour_from"), values.get("hour_to")
    if start is not None and end is not None and end <= start:
        raise _refuse(_("hour_to must be after hour_from (hours of one day, 0 to 24)."), "hour_to")


def _segment_tags(values: Mapping[str, Any]) -> list[str]:
    tags = values.get("segment_tags") or []
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or not all(isinstance(tag, str) and 0 < len(tag) <= 40 and tag.isprintable() for tag in tags)
    ):
        raise _refuse(
            _("segment_tags must be at most %(most)s tags of 1 to 40 characters.") % {"most": MAX_TAGS},
            "segment_tags",
        )
    return sorted(set(tags))


def _text(values: Mapping[str, Any], name: str, most: int, *, blank: bool) -> str:
    value = values.get(name)
    if not isinstance(value, str) or len(value) > most or (not blank and not value.strip()):
        raise _refuse(_("%(field)s must be text of at most %(most)s characters.") % {"field": name, "most": most}, name)
    return value


def promotion_check(
    *,
    merchant: Merchant,
    livemode: bool,
    values: Mapping[str, Any],
    now: dt.datetime | None = None,
    ends_changed: bool = True,
) -> Checked:
    """Checks a promotion's values as a whole (every field of `FIELDS`; lists of codes as described above) and
    resolves its references. Raises `ValidationFailed` (422) naming the field. `ends_changed` False lets an update
    that leaves the end alone keep an end already past."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown promotion fields: {', '.join(unknown)}")
    now = now or timezone.now()
    name = _text(values, "name", 120, blank=False)
    description = _text(values, "description", 500, blank=True)
    kind = _kind(values)
    _benefit(values, kind)
    benefit = _reward_benefit(merchant, values.get("reward_benefit"))
    _amount(values, "min_spend", least=0)
    _amount(values, "budget")
    if values.get("budget") is None:
        raise _refuse(_("Give the budget, in minor units of the currency."), "budget")
    for limit in LIMIT_FIELDS:
        _count(values, limit, least=1)
    _schedule(values, now=now, ends_changed=ends_changed)
    _hours(values)
    weekdays = _choices(values, "weekdays", range(1, 8))
    categories = _choices(values, "categories", SpendCategory.values)
    card_tiers = _choices(values, "card_tiers", CardProduct.Tier.values)
    methods = _choices(values, "methods", METHODS)
    segment_tags = _segment_tags(values)
    if values.get("stacking") not in Promotion.Stacking.values:
        raise _refuse(_("stacking must be exclusive or stackable."), "stacking")
    _count(values, "priority", least=-32768, most=32767)
    if not isinstance(values.get("first_purchase"), bool):
        raise _refuse(_("first_purchase must be true or false."), "first_purchase")

    store_codes = _codes(values, "stores")
    stores = _resolved(
        {
            store.code: store
            for store in Store.objects.filter(merchant=merchant, livemode=livemode, code__in=store_codes)
        },
        store_codes,
        "stores",
        _("You have no store %(code)s in this mode."),
    )
    bank_codes = _codes(values, "card_banks")
    card_banks = _resolved(
        {bank.code: bank for bank in MemberBank.objects.filter(code__in=bank_codes)},
        bank_codes,
        "card_banks",
        _("No member bank has the code %(code)s."),
    )
    product_codes = _codes(values, "card_products")
    wanted = [code.split("/", 1) for code in product_codes if code.count("/") == 1]
    products: dict[str, CardProduct] = {}
    if wanted:
        matching = Q()
        for bank_code, product_code in wanted:
            matching |= Q(bank__code=bank_code, code=product_code)
        products = {
            f"{product.bank.code}/{product.code}": product
            for product in CardProduct.objects.filter(matching).select_related("bank")
        }
    card_products = _resolved(
        products, product_codes, "card_products", _("No card product %(code)s (give it as BANK/CODE).")
    )

    cofunder_code, share = values.get("cofunder"), values.get("cofunder_share")
    cofunder = None
    if cofunder_code is not None or share is not None:
        if cofunder_code is None:
            raise _refuse(_("Name the co-funding bank with its share."), "cofunder")
        if share is None:
            raise _refuse(_("Give the co-funding bank's share of the cost."), "cofunder_share")
        _decimal(values, "cofunder_share", above=Decimal(0), most=Decimal(1))
        cofunder = MemberBank.objects.filter(code=cofunder_code, status=MemberBank.Status.ACTIVE).first()
        if cofunder is None:
            raise _refuse(
                _("No active member bank has the code %(code)s.") % {"code": cofunder_code},
                "cofunder",
                code="unknown_reference",
            )

    columns = {
        "name": name,
        "description": description,
        "kind": kind,
        "currency": values["currency"],
        **{field: values.get(field) for field in BENEFIT_FIELDS if field != "reward_benefit"},
        "reward_benefit": benefit,
        "min_spend": values.get("min_spend") or 0,
        "categories": categories,
        "card_tiers": card_tiers,
        "methods": methods,
        "weekdays": weekdays,
        "hour_from": values.get("hour_from"),
        "hour_to": values.get("hour_to"),
        "first_purchase": values["first_purchase"],
        "segment_tags": segment_tags,
        "budget": values["budget"],
        **{field: values.get(field) for field in LIMIT_FIELDS},
        "stacking": values["stacking"],
        "priority": values.get("priority") or 0,
        "starts_at": values["starts_at"],
        "ends_at": values["ends_at"],
        "cofunder": cofunder,
        "cofunder_share": share if cofunder is not None else None,
    }
    return Checked(columns=columns, stores=stores, card_banks=card_banks, card_products=card_products)


# --- the segment rule ------------------------------------------------------------------------------------------------


def _uncovered(merchant: Merchant, livemode: bool, now: dt.datetime) -> set[int]:
    """The active promotions with segment tags (not yet over) that no active untargeted offer covers."""
    active = Promotion.objects.filter(merchant=merchant, livemode=livemode, status=Status.ACTIVE)
    covers = active.filter(segment_tags=[]).exclude(cofunding__in=[Cofunding.PENDING, Cofunding.REJECTED])
    targeted = active.exclude(segment_tags=[]).filter(ends_at__gt=now)
    return set(
        targeted.exclude(
            Exists(
                covers.filter(
                    starts_at__lte=Greatest(OuterRef("starts_at"), Value(now)), ends_at__gte=OuterRef("ends_at")
                )
            )
        ).values_list("pk", flat=True)
    )


def _segment_rule(promotion: Promotion, before: set[int], now: dt.datetime) -> None:
    """Refuses a change that leaves a targeted promotion without an untargeted offer covering it (one that was
    uncovered before the change is left to its owner: this change did not cause it)."""
    newly = _uncovered(promotion.merchant, promotion.livemode, now) - before
    if not newly:
        return
    if promotion.pk in newly:
        raise Conflict(
            _(
                "A promotion for segments needs an active promotion for every cardholder at your business whose dates "
                "cover its own: a segment-only offer is never the only offer."
            ),
            code="segment_only_offer",
            param="segment_tags",
        )
    raise Conflict(
        _(
            "This is the promotion for every cardholder that covers your active promotions for segments; pause those "
            "first: a segment-only offer is never the only offer."
        ),
        code="segment_offers_need_cover",
    )


# --- the writes ------------------------------------------------------------------------------------------------------


def _lock_merchant(merchant: Merchant) -> None:
    Merchant.objects.select_for_update(no_key=True).filter(pk=merchant.pk).exists()


def _locked(promotion: Promotion) -> Promotion:
    _lock_merchant(promotion.merchant)
    return (
        Promotion.objects.select_for_update(no_key=True, of=("self",))
        .select_related("merchant", "cofunder", "reward_benefit")
        .get(pk=promotion.pk)
    )


def _audit(actor: Any, action: str, promotion: Promotion, before: dict[str, Any] | None) -> None:
    audit_record(
        actor=actor,
        action=action,
        obj=promotion,
        before=before,
        after=_picture(promotion),
        bank_id=promotion.merchant.sponsor_bank_id,
    )


def _picture(promotion: Promotion) -> dict[str, Any]:
    """The row, and its lists by code (a snapshot has no many-to-many fields)."""
    values = values_of(promotion)
    return {**snapshot(promotion), **{name: values[name] for name in ("stores", "card_banks", "card_products")}}


def _apply(promotion: Promotion, checked: Checked) -> None:
    """The lists first, then the row (its `updated_at` tells the engine to read the promotion again). The budget's
    counters (`committed`, `uses`) are the engine's: never written here."""
    promotion.stores.set(checked.stores)
    promotion.card_banks.set(checked.card_banks)
    promotion.card_products.set(checked.card_products)
    promotion.save(update_fields=[*SAVED, "updated_at"])


SAVED = (
    "name", "description", "kind", "currency", *(f for f in BENEFIT_FIELDS), "min_spend", "categories", "card_tiers",
    "methods", "weekdays", "hour_from", "hour_to", "first_purchase", "segment_tags", "budget", *LIMIT_FIELDS,
    "stacking", "priority", "starts_at", "ends_at", "cofunder", "cofunder_share", "cofunding",
    "cofunding_decided_by", "cofunding_decided_at",
)  # fmt: skip


@transaction.atomic
def promotion_create(*, merchant: Merchant, livemode: bool, actor: Any = None, **fields: Any) -> Promotion:
    """A new active promotion of `merchant` in the mode given. `fields` are those of `FIELDS` (name, kind, budget
    and ends_at required; starts_at defaults to now). Naming a co-funding bank (`cofunder`, `cofunder_share`) saves it
    waiting for that bank's approval: it applies once the bank approves it."""
    now = timezone.now()
    _lock_merchant(merchant)
    values = {**DEFAULTS, "starts_at": now, **fields}
    checked = promotion_check(merchant=merchant, livemode=livemode, values=values, now=now)
    before = _uncovered(merchant, livemode, now)
    promotion = Promotion(merchant=merchant, livemode=livemode, status=Status.ACTIVE, **checked.columns)
    promotion.cofunding = Cofunding.PENDING if promotion.cofunder is not None else Cofunding.NONE
    promotion.save()
    _apply(promotion, checked)
    _segment_rule(promotion, before, now)
    _audit(actor, "promotion.create", promotion, None)
    return promotion


@transaction.atomic
def promotion_update(*, promotion: Promotion, actor: Any = None, **fields: Any) -> Promotion:
    """Changes the fields given; the others keep their values (null clears an optional one).

    What may change, running or not: the name and description; the benefit's figures within its kind; every
    condition; the budget (never below what is used: `committed`); the limits (`max_uses` never below `uses`);
    stacking and priority; the schedule (an end in the future); the co-funding bank and share. The kind and the
    currency never change. Naming another co-funding bank or share, or raising the budget of a co-funded promotion
    (the bank's part grows with it), puts the co-funding back to waiting for the bank's approval. An ended promotion
    changes no more (409)."""
    now = timezone.now()
    promotion = _locked(promotion)
    if promotion.status == Status.ENDED:
        raise Conflict(_("The promotion has ended: it changes no more."), code="promotion_ended")
    current = values_of(promotion)
    for name in FIXED:
        if name in fields and fields[name] != current[name]:
            raise _refuse(
                _("A promotion's %(field)s never changes; end it and create another.") % {"field": name},
                name,
                code="immutable_field",
            )
    values = {**current, **fields}
    checked = promotion_check(
        merchant=promotion.merchant,
        livemode=promotion.livemode,
        values=values,
        now=now,
        ends_changed=values["ends_at"] != current["ends_at"],
    )
    if checked.columns["budget"] < promotion.committed:
        raise _refuse(
            _("The budget cannot go below what is already used (%(used)s).") % {"used": promotion.committed},
            "budget",
            code="budget_below_used",
        )
    if checked.columns["max_uses"] is not None and checked.columns["max_uses"] < promotion.uses:
        raise _refuse(
            _("max_uses cannot go below the uses already made (%(uses)s).") % {"uses": promotion.uses},
            "max_uses",
            code="max_uses_below_used",
        )
    before_picture = _picture(promotion)
    before = _uncovered(promotion.merchant, promotion.livemode, now)
    cofunder, share = checked.columns["cofunder"], checked.columns["cofunder_share"]
    if cofunder is None:
        promotion.cofunding, promotion.cofunding_decided_by, promotion.cofunding_decided_at = Cofunding.NONE, None, None
    elif (
        cofunder.pk != promotion.cofunder_id
        or share != promotion.cofunder_share
        or checked.columns["budget"] > promotion.budget
    ):
        promotion.cofunding, promotion.cofunding_decided_by, promotion.cofunding_decided_at = (
            Cofunding.PENDING,
            None,
            None,
        )
    for name, value in checked.columns.items():
        setattr(promotion, name, value)
    _apply(promotion, checked)
    _segment_rule(promotion, before, now)
    _audit(actor, "promotion.update", promotion, before_picture)
    return promotion


def _move(promotion: Promotion, actor: Any, *, frm: Iterable[str], to: str) -> Promotion:
    now = timezone.now()
    with transaction.atomic():
        promotion = _locked(promotion)
        if promotion.status not in frm:
            code = "promotion_ended" if promotion.status == Status.ENDED else "promotion_unexpected_state"
            raise Conflict(_("The promotion is %(status)s.") % {"status": promotion.get_status_display()}, code=code)
        before = _uncovered(promotion.merchant, promotion.livemode, now)
        previous = promotion.status
        promotion.status = to
        promotion.save(update_fields=["status", "updated_at"])
        _segment_rule(promotion, before, now)
        audit_record(
            actor=actor,
            action=f"promotion.{ACTIONS[to]}",
            obj=promotion,
            before={"status": previous},
            after={"status": to},
            bank_id=promotion.merchant.sponsor_bank_id,
        )
    return promotion


ACTIONS: dict[str, str] = {Status.PAUSED: "pause", Status.ACTIVE: "resume", Status.ENDED: "end"}


def promotion_pause(*, promotion: Promotion, actor: Any = None) -> Promotion:
    """Active → paused: it applies to no payment until resumed; payments already holding it keep their use."""
    return _move(promotion, actor, frm=[Status.ACTIVE], to=Status.PAUSED)


def promotion_resume(*, promotion: Promotion, actor: Any = None) -> Promotion:
    """Paused → active (a targeted promotion only with an untargeted one covering it)."""
    return _move(promotion, actor, frm=[Status.PAUSED], to=Status.ACTIVE)


def promotion_end(*, promotion: Promotion, actor: Any = None) -> Promotion:
    """Active or paused → ended, for good: nothing changes it any more. Payments already holding a use keep it."""
    return _move(promotion, actor, frm=[Status.ACTIVE, Status.PAUSED], to=Status.ENDED)


# --- reading back ----------------------------------------------------------------------------------------------------


def values_of(promotion: Promotion) -> dict[str, Any]:
    """A promotion's values as `promotion_check` takes them (references as codes)."""
    values = {
        name: getattr(promotion, name)
        for name in FIELDS
        if name not in ("stores", "card_banks", "card_products", "cofunder", "reward_benefit")
    }
    values["reward_benefit"] = promotion.reward_benefit_id
    values["cofunder"] = promotion.cofunder.code if promotion.cofunder is not None else None
    values["stores"] = sorted(store.code for store in promotion.stores.all())
    values["card_banks"] = sorted(bank.code for bank in promotion.card_banks.all())
    values["card_products"] = sorted(f"{product.bank.code}/{product.code}" for product in _products(promotion))
    return values


def _products(promotion: Promotion) -> list[CardProduct]:
    # Prefetched with their banks by `promotions_with_lists`; otherwise one query with the banks joined.
    if "card_products" in getattr(promotion, "_prefetched_objects_cache", {}):
        return list(promotion.card_products.all())
    return list(promotion.card_products.select_related("bank"))


def promotions_with_lists(queryset: QuerySet[Promotion]) -> QuerySet[Promotion]:
    """What `promotion_out` reads, in a fixed number of queries."""
    return queryset.select_related("cofunder").prefetch_related(
        "stores", "card_banks", Prefetch("card_products", queryset=CardProduct.objects.select_related("bank"))
    )


def _unix(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def promotion_out(promotion: Promotion) -> dict[str, Any]:
    """A promotion as the merchant API shows it."""
    values = values_of(promotion)
    benefit = {
        name: (str(values[name]) if isinstance(values[name], Decimal) else values[name]) for name in BENEFIT_FIELDS
    }
    cofunding = None
    if promotion.cofunder_id is not None:
        cofunding = {
            "bank": values["cofunder"],
            "share": str(promotion.cofunder_share),
            "status": promotion.cofunding,
        }
    return {
        "id": promotion.public_id,
        "object": "promotion",
        "name": promotion.name,
        "description": promotion.description,
        "kind": promotion.kind,
        "currency": promotion.currency,
        "status": promotion.status,
        **benefit,
        "conditions": {name: values[name] for name in CONDITION_FIELDS},
        "budget": promotion.budget,
        "budget_used": promotion.committed,
        "budget_left": promotion.budget_left,
        "uses": promotion.uses,
        "limits": {name: values[name] for name in LIMIT_FIELDS},
        "stacking": promotion.stacking,
        "priority": promotion.priority,
        "starts_at": _unix(promotion.starts_at),
        "ends_at": _unix(promotion.ends_at),
        "cofunding": cofunding,
        "livemode": promotion.livemode,
        "created": _unix(promotion.created_at),
    }
