"""The monthly revenue share (按贡献度分配): terms kept four-eyes, and the run that shares a month's pool.

Terms. A revenue-share policy (weights) and a bank's membership fee are versions that apply from a month on. An
alliance operator saves a draft (editable) and submits it to the approval queue (`core.approvals`, kind
"alliance.revenue_share_terms", the version as its payload); another alliance operator approves it there, which makes
the version approved in the approval's transaction, or rejects it, which leaves it a draft. An approved version is
never edited and a submitted one not while it waits; a change is a new version. Every step is audited.

The run. `revenue_share_run(month)` reads the month's metrics and pool (`alliance.metrics`: the payments once, the
exchanges from the month's clearing runs), the policy in force for the month, the membership fees and running costs,
computes each bank's share exactly (fractions) and splits the pool and the costs with `core.money.allocate`. The same
inputs, policy and result as the month's latest version return that version; anything else is a new version (a
restatement) with the differences. Versions of a month are numbered under a transaction-scoped advisory lock on the
month, backed by a unique constraint.

See docs/revenue-share.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import IO, Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction
from django.db.models import Max, Q, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.approvals import ApprovalKind, approval_request
from core.audit import audit_record, snapshot
from core.calendar import local_now
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.jobs import job_run
from core.models import ApprovalRequest
from core.money import allocate, format_minor, quantize
from core.scoping import is_alliance_operator
from members.models import MemberBank

from .. import metrics
from ..models import (
    METRICS,
    AllianceCost,
    Approval,
    FourEyesVersion,
    MembershipFee,
    RevenueSharePolicy,
    RevenueShareRun,
    RevenueShareStatement,
)

JOB = "alliance.revenue_share"
SHARE_PLACES = 12  # the decimals a share is shown with; the computation itself is exact
WEIGHT_PLACES = 4
Actor = AbstractBaseUser | AnonymousUser | None
V = TypeVar("V", bound=FourEyesVersion)


# --- months ----------------------------------------------------------------------------------------------------------


def month_start(value: str | dt.date) -> dt.date:
    """ "2026-10" or any date → the 1st of that month; anything else is refused."""
    if isinstance(value, dt.date):
        return value.replace(day=1)
    text = str(value).strip()
    year, _dash, number = text.partition("-")
    try:
        if len(year) != 4 or len(number) != 2 or not (year + number).isdigit():
            raise ValueError(text)
        return dt.date(int(year), int(number), 1)
    except ValueError:
        raise ValidationFailed(
            _("A month is written YYYY-MM, e.g. 2026-10."), code="invalid_month", param="month"
        ) from None


def previous_month(today: dt.date | None = None) -> dt.date:
    today = today or local_now().date()
    return (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def _first_of_month(value: dt.date | None, param: str = "effective_from") -> dt.date:
    if value is None or value.day != 1:
        raise ValidationFailed(_("Terms start on the first day of a month."), code="invalid_month", param=param)
    return value


# --- four eyes -------------------------------------------------------------------------------------------------------


def _require_alliance_operator(actor: Actor) -> AbstractBaseUser:
    if actor is None or not is_alliance_operator(actor):
        raise PermissionDenied(_("Only alliance operators keep the revenue-share terms."))
    return actor  # type: ignore[return-value]


def _locked(model: type[V], pk: int) -> V:
    obj = model._default_manager.select_for_update().filter(pk=pk).first()
    if obj is None:
        raise NotFound(_("No such version."), param="id")
    return obj


def _check_weights(weights: Mapping[str, Any], param: str) -> dict[str, Decimal]:
    checked: dict[str, Decimal] = {}
    for metric in METRICS:
        try:
            weight = Decimal(str(weights.get(metric, 0)))
        except InvalidOperation:
            raise ValidationFailed(_("A weight is a decimal number."), code="invalid_weight", param=param) from None
        if not weight.is_finite() or weight < 0 or weight > 1 or quantize(weight, WEIGHT_PLACES) != weight:
            raise ValidationFailed(
                _("Each weight is between 0 and 1 with at most four decimals."), code="invalid_weight", param=param
            )
        checked[metric] = weight
    unknown = set(weights) - set(METRICS)
    if unknown:
        raise ValidationFailed(
            _("Unknown metric: %(names)s.") % {"names": ", ".join(sorted(unknown))}, code="invalid_weight", param=param
        )
    if sum(checked.values(), Decimal(0)) != 1:
        raise ValidationFailed(_("The weights must add up to exactly 1."), code="weights_not_one", param=param)
    return checked


def policy_check(
    *, weights: Mapping[str, Any], cost_weights: Mapping[str, Any], effective_from: dt.date | None
) -> None:
    """Refuses weights that are not in [0, 1] with four decimals summing to exactly 1, or a start that is not the
    first of a month. Writes nothing."""
    _check_weights(weights, "weights")
    _check_weights(cost_weights, "cost_weights")
    _first_of_month(effective_from)


def _lock_versions(name: str) -> None:
    """Serialises numbering of `name`'s versions (until the transaction ends)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"alliance:{name}"])


@transaction.atomic
def policy_save(
    *,
    policy_id: int | None,
    weights: Mapping[str, Any],
    cost_weights: Mapping[str, Any],
    effective_from: dt.date | None,
    reason: str = "",
    actor: Actor,
) -> RevenueSharePolicy:
    """A new draft version (`policy_id` None) or a change to a draft; a version submitted or decided is refused."""
    user = _require_alliance_operator(actor)
    policy_check(weights=weights, cost_weights=cost_weights, effective_from=effective_from)
    fields: dict[str, Any] = {f"weight_{m}": w for m, w in _check_weights(weights, "weights").items()}
    fields |= {f"cost_weight_{m}": w for m, w in _check_weights(cost_weights, "cost_weights").items()}
    fields |= {"effective_from": effective_from, "reason": reason.strip()}
    if policy_id is None:
        _lock_versions("revenuesharepolicy")
        fields["version"] = (RevenueSharePolicy.objects.aggregate(top=Max("version"))["top"] or 0) + 1
    return _draft_save(RevenueSharePolicy, policy_id, fields, user=user, action="alliance.policy.save", reason=reason)


def _draft_save(
    model: type[V], version_id: int | None, fields: dict[str, Any], *, user: AbstractBaseUser, action: str, reason: str
) -> V:
    """A new draft (`version_id` None) or a change to a draft (refused once submitted or decided), audited."""
    if version_id is None:
        version = model._default_manager.create(**fields)
        before = None
    else:
        version = _locked(model, version_id)
        _refuse_unless_editable(version)
        before = snapshot(version)
        for name, value in fields.items():
            setattr(version, name, value)
        version.save()
    audit_record(actor=user, action=action, obj=version, before=before, after=snapshot(version), reason=reason)
    return version


@transaction.atomic
def membership_fee_save(
    *, fee_id: int | None, bank_id: int, amount: int, effective_from: dt.date | None, reason: str = "", actor: Actor
) -> MembershipFee:
    """A new draft of a bank's membership fee (fen a month) or a change to a draft."""
    user = _require_alliance_operator(actor)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValidationFailed(_("A fee is a whole, non-negative number of fen."), param="amount")
    _first_of_month(effective_from)
    if not MemberBank.objects.filter(pk=bank_id).exists():
        raise NotFound(_("No such bank."), param="bank")
    fields = {"bank_id": bank_id, "amount": amount, "effective_from": effective_from, "reason": reason.strip()}
    return _draft_save(MembershipFee, fee_id, fields, user=user, action="alliance.membership_fee.save", reason=reason)


def _refuse_unless_editable(version: FourEyesVersion) -> None:
    if version.status == Approval.APPROVED:
        raise Conflict(_("This version is approved: a change is a new version."), code="version_decided")
    if terms_requests_pending(type(version), version.pk).exists():
        raise Conflict(
            _("This version is waiting for approval: a change waits for the decision."), code="version_pending"
        )


# --- through the approval queue ------------------------------------------------------------------------------------

TERMS_APPROVAL = "alliance.revenue_share_terms"
TERMS_PERMISSION = "alliance.approve_terms"
TERMS_MODELS: dict[str, type[FourEyesVersion]] = {
    "revenuesharepolicy": RevenueSharePolicy,
    "membershipfee": MembershipFee,
}


def terms_requests_pending(model: type[FourEyesVersion], version_id: int) -> QuerySet[ApprovalRequest]:
    """The requests to approve this version still waiting in the approval queue (at most one)."""
    return ApprovalRequest.objects.filter(
        kind=TERMS_APPROVAL,
        status=ApprovalRequest.Status.PENDING,
        payload__model=model._meta.model_name,
        payload__version_id=version_id,
    )


def _terms(version: FourEyesVersion) -> dict[str, Any]:
    """What the checker approves: the version's terms, as the payload carries them."""
    common = {"effective_from": version.effective_from.isoformat()}
    if isinstance(version, RevenueSharePolicy):
        return common | {
            "version": version.version,
            "weights": {m: str(w) for m, w in version.weights().items()},
            "cost_weights": {m: str(w) for m, w in version.cost_weights().items()},
        }
    assert isinstance(version, MembershipFee)
    return common | {"bank_id": version.bank_id, "amount": version.amount}


def _version_of(payload: Mapping[str, Any], *, lock: bool = False) -> FourEyesVersion:
    model = TERMS_MODELS.get(str(payload.get("model")))
    if model is None:
        raise ValidationFailed(_("Unknown kind of terms."), param="model")
    rows = model._default_manager.filter(pk=payload.get("version_id"))
    version = (rows.select_for_update() if lock else rows).first()
    if version is None:
        raise NotFound(_("No such version."), param="id")
    return version


def terms_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a request: the version (its model and id) and its terms. Refused once the version is approved,
    or when the terms named are no longer the version's (checked when requested and again when approved)."""
    version = _version_of(payload)
    if version.status == Approval.APPROVED:
        raise Conflict(_("This version is approved: a change is a new version."), code="version_decided")
    terms = _terms(version)
    if "terms" in payload and payload["terms"] != terms:
        raise Conflict(_("This version has changed since it was submitted."), code="version_changed")
    if isinstance(version, RevenueSharePolicy):
        policy_check(
            weights=version.weights(), cost_weights=version.cost_weights(), effective_from=version.effective_from
        )
    return {"model": version._meta.model_name, "version_id": version.pk, "terms": terms}


def terms_bank(payload: dict[str, Any]) -> int | None:
    return None  # the alliance's terms: an alliance operator checks


def terms_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    terms = payload.get("terms", {})
    rows: list[tuple[str, str]] = []
    if payload.get("model") == "revenuesharepolicy":
        rows.append((_("terms"), _("revenue-share policy v%(version)s") % {"version": terms.get("version")}))
        rows.append((_("effective from"), str(terms.get("effective_from", ""))[:7]))
        for label, key in ((_("weights"), "weights"), (_("cost weights"), "cost_weights")):
            weights = terms.get(key, {})
            rows.append(
                (label, " · ".join(f"{metric} {weights[metric]}" for metric in weights if Decimal(weights[metric])))
            )
    else:
        bank = MemberBank.objects.filter(pk=terms.get("bank_id")).values_list("code", flat=True).first()
        rows.append((_("terms"), _("membership fee of %(bank)s") % {"bank": bank or f"#{terms.get('bank_id')}"}))
        rows.append((_("effective from"), str(terms.get("effective_from", ""))[:7]))
        rows.append((_("monthly fee"), format_minor(int(terms.get("amount", 0)), "CNY")))
    return rows


@transaction.atomic
def terms_submit(*, model: type[V], version_id: int, actor: Actor, reason: str | None = None) -> ApprovalRequest:
    """The maker submits a draft to the approval queue; the reason is the version's own unless given. One request
    at a time per version."""
    user = _require_alliance_operator(actor)
    version = _locked(model, version_id)
    _refuse_unless_editable(version)
    why = version.reason if reason is None else reason
    return approval_request(
        kind=TERMS_APPROVAL,
        payload={"model": model._meta.model_name, "version_id": version.pk},
        reason=why,
        maker=user,
    )


def terms_apply(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> FourEyesVersion:
    """Approves the version (the kind's `apply`, inside the approval's transaction, after `terms_validate`): it is in
    force from its month; audited with its maker and checker."""
    version = _version_of(payload, lock=True)
    if version.status == Approval.APPROVED:
        raise Conflict(_("This version is approved: a change is a new version."), code="version_decided")
    if _terms(version) != payload["terms"]:
        raise Conflict(_("This version has changed since it was submitted."), code="version_changed")
    before = snapshot(version)
    version.status = Approval.APPROVED
    version.save(update_fields=["status"])
    audit_record(
        actor=checker,
        action=f"alliance.{version._meta.model_name}.approve",
        obj=version,
        before=before,
        after=snapshot(version) | {"maker": maker.pk, "checker": checker.pk},
    )
    return version


TERMS_KIND = ApprovalKind(
    code=TERMS_APPROVAL,
    label=gettext_lazy("revenue-share terms"),
    permission=TERMS_PERMISSION,
    validate=terms_validate,
    bank_of=terms_bank,
    apply=terms_apply,  # type: ignore[arg-type]
    describe=terms_describe,
)


def policy_in_force(month: dt.date) -> RevenueSharePolicy:
    policy = (
        RevenueSharePolicy.objects.filter(status=Approval.APPROVED, effective_from__lte=month)
        .order_by("-effective_from", "-version")
        .first()
    )
    if policy is None:
        raise NotFound(
            _("No approved revenue-share policy is in force for %(month)s.") % {"month": f"{month:%Y-%m}"},
            code="no_policy",
            param="month",
        )
    return policy


def membership_fees_in_force(month: dt.date) -> dict[int, int]:
    """Bank id → the monthly fee (fen) of its latest approved version from `month` or before; 0 fees left out."""
    fees: dict[int, int] = {}
    rows = MembershipFee.objects.filter(status=Approval.APPROVED, effective_from__lte=month).order_by(
        "bank_id", "-effective_from", "-id"
    )
    for bank_id, amount in rows.values_list("bank_id", "amount"):
        fees.setdefault(bank_id, amount)
    return {bank: amount for bank, amount in fees.items() if amount}


# --- the computation -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    month: dt.date
    values: dict[str, dict[int, int]]  # metric → bank → value
    fee_share: dict[str, int]  # currency → hundredths of a minor unit
    exchange_fee_units: int
    membership: dict[int, int]  # bank → fen
    costs: list[tuple[str, int]]  # (description, fen)
    banks: list[tuple[int, str]]  # (id, code), by code


def _round_units_to_fen(units: int) -> int:
    """Ten-thousandths of CNY to fen, half to even: the pool's one rounding."""
    return int(quantize(Decimal(units) / 100, 0))


def split_pool(total: int, shares: list[Fraction]) -> list[int]:
    """`total` (fen, either sign) in proportion to exact `shares` (summing to 1) with `allocate`: the parts sum to
    `total`. Each share is passed as its numerator over the shares' common denominator, so nothing is rounded."""
    denominator = math.lcm(*(share.denominator for share in shares))
    numerators = [Decimal(share.numerator * (denominator // share.denominator)) for share in shares]
    if total < 0:
        return [-part for part in allocate(-total, numerators)]
    return allocate(total, numerators)


def bank_shares(
    values: Mapping[str, Mapping[int, int]], weights: Mapping[str, Decimal], bank_ids: list[int]
) -> tuple[dict[int, Fraction], dict[str, Fraction]]:
    """Each bank's exact share (they sum to 1) and each metric's effective weight.

    A bank's value counts from zero up (a negative month's volume counts 0). A metric whose counted values are all
    zero drops out and its weight goes to the others in proportion to theirs. When no metric with a weight is left,
    every bank takes an equal share."""
    counted = {m: {b: max(values.get(m, {}).get(b, 0), 0) for b in bank_ids} for m in METRICS}
    totals = {m: sum(counted[m].values()) for m in METRICS}
    live = [m for m in METRICS if totals[m] > 0 and weights[m] > 0]
    weight_sum = sum((Fraction(weights[m]) for m in live), Fraction(0))
    if not live or not bank_ids:
        equal = Fraction(1, len(bank_ids)) if bank_ids else Fraction(0)
        return dict.fromkeys(bank_ids, equal), dict.fromkeys(METRICS, Fraction(0))
    effective = {m: (Fraction(weights[m]) / weight_sum if m in live else Fraction(0)) for m in METRICS}
    shares = {b: sum((effective[m] * Fraction(counted[m][b], totals[m]) for m in live), Fraction(0)) for b in bank_ids}
    return shares, effective


def _shown(value: Fraction) -> str:
    return format(quantize(Decimal(value.numerator) / Decimal(value.denominator), SHARE_PLACES), "f")


@dataclass(frozen=True)
class Result:
    pool: int
    costs: int
    shares: dict[int, Fraction]
    cost_shares: dict[int, Fraction]
    amounts: dict[int, int]
    cost_parts: dict[int, int]
    lines: dict[int, list[dict[str, Any]]]


def compute(inputs: Inputs, policy: RevenueSharePolicy) -> Result:
    """Pure: the pool, each bank's shares and parts, and the metric lines its statement shows."""
    fee_units = inputs.fee_share.get("CNY", 0)
    pool = _round_units_to_fen(fee_units + inputs.exchange_fee_units) + sum(inputs.membership.values())
    costs = sum(amount for _, amount in inputs.costs)
    bank_ids = [bank for bank, _ in inputs.banks]
    weights, cost_weights = policy.weights(), policy.cost_weights()
    shares, effective = bank_shares(inputs.values, weights, bank_ids)
    cost_shares, cost_effective = bank_shares(inputs.values, cost_weights, bank_ids)
    amounts = dict(zip(bank_ids, split_pool(pool, [shares[b] for b in bank_ids]), strict=True)) if bank_ids else {}
    cost_parts = (
        dict(zip(bank_ids, split_pool(costs, [cost_shares[b] for b in bank_ids]), strict=True)) if bank_ids else {}
    )
    totals = {m: sum(max(v, 0) for v in inputs.values.get(m, {}).values()) for m in METRICS}
    lines: dict[int, list[dict[str, Any]]] = {}
    for bank in bank_ids:
        rows = []
        for metric in METRICS:
            value = inputs.values.get(metric, {}).get(bank, 0)
            normalised = Fraction(max(value, 0), totals[metric]) if totals[metric] else Fraction(0)
            rows.append(
                {
                    "metric": metric,
                    "value": value,
                    "total": totals[metric],
                    "normalised": _shown(normalised),
                    "weight": str(weights[metric]),
                    "effective_weight": _shown(effective[metric]),
                    "weighted_share": _shown(effective[metric] * normalised),
                    "cost_weight": str(cost_weights[metric]),
                    "cost_effective_weight": _shown(cost_effective[metric]),
                    "cost_weighted_share": _shown(cost_effective[metric] * normalised),
                }
            )
        lines[bank] = rows
    return Result(pool, costs, shares, cost_shares, amounts, cost_parts, lines)


def read_inputs(month: dt.date, *, previous: RevenueShareRun | None = None) -> Inputs:
    exchanged = metrics.exchanges(month)
    values = metrics.metric_values(month, exchanged)
    end = metrics.MonthRange(month).end_month
    membership = membership_fees_in_force(month)
    costs = list(AllianceCost.objects.filter(month=month).order_by("id").values_list("description", "amount"))
    wanted = Q(status__in=[MemberBank.Status.ACTIVE, MemberBank.Status.SUSPENDED], joined_on__lt=end)
    involved = {bank for by_bank in values.values() for bank in by_bank} | set(membership)
    if previous is not None:
        involved |= set(previous.statements.values_list("bank_id", flat=True))
    banks = list(MemberBank.objects.filter(wanted | Q(pk__in=involved)).order_by("code").values_list("pk", "code"))
    return Inputs(
        month=month,
        values=values,
        fee_share=metrics.fee_share(month),
        exchange_fee_units=exchanged.fees,
        membership=membership,
        costs=costs,
        banks=banks,
    )


def digest(inputs: Inputs, policy: RevenueSharePolicy, result: Result) -> str:
    """What makes a version: the inputs, the policy (and its weights) and the result. Equal digests, equal runs."""
    codes = dict(inputs.banks)
    body = {
        "month": inputs.month.isoformat(),
        "policy": [
            policy.pk,
            policy.version,
            {m: str(w) for m, w in policy.weights().items()},
            {m: str(w) for m, w in policy.cost_weights().items()},
        ],
        "values": {
            m: {codes.get(b, str(b)): v for b, v in sorted(by_bank.items())} for m, by_bank in inputs.values.items()
        },
        "fee_share": inputs.fee_share,
        "exchange_fees": inputs.exchange_fee_units,
        "membership": {codes.get(b, str(b)): fee for b, fee in sorted(inputs.membership.items())},
        "costs": inputs.costs,
        "result": {codes[b]: [result.amounts[b], result.cost_parts[b]] for b, _ in inputs.banks},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- the run -------------------------------------------------------------------------------------------------------


def _lock_month(month: dt.date) -> None:
    _lock_versions(f"revenue_share:{month:%Y-%m}")


def _month_checked(month: str | dt.date) -> dt.date:
    first = month_start(month)
    if first > local_now().date():
        raise ValidationFailed(
            _("%(month)s has not begun: nothing to share yet.") % {"month": f"{first:%Y-%m}"},
            code="month_not_begun",
            param="month",
        )
    return first


def revenue_share_compute(month: str | dt.date, *, actor: Actor = None) -> RevenueShareRun:
    """Computes the month in one transaction under the month's lock: the latest version when nothing changed, else a
    new version. Call `revenue_share_run` (which records a job run) unless already inside one."""
    first = _month_checked(month)
    closed = metrics.MonthRange(first).end_month <= local_now().date()
    metrics.MonthRange(first).refuse_archived()  # a month whose rows were archived would be shared out short
    with transaction.atomic():
        _lock_month(first)
        metrics.tune_transaction()
        latest = RevenueShareRun.objects.filter(month=first).order_by("-version").first()
        policy = policy_in_force(first)
        inputs = read_inputs(first, previous=latest)
        result = compute(inputs, policy)
        key = digest(inputs, policy, result)
        if latest is not None and latest.input_digest == key:
            if latest.status == RevenueShareRun.Status.PROVISIONAL and closed:
                latest.status = RevenueShareRun.Status.FINAL
                latest.save(update_fields=["status"])
            return latest
        return _store(inputs, policy, result, key, latest, closed=closed, actor=actor)


def _store(
    inputs: Inputs,
    policy: RevenueSharePolicy,
    result: Result,
    key: str,
    latest: RevenueShareRun | None,
    *,
    closed: bool,
    actor: Actor,
) -> RevenueShareRun:
    codes = dict(inputs.banks)
    unpooled = {currency: amount for currency, amount in sorted(inputs.fee_share.items()) if currency != "CNY"}
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    if latest is not None:
        RevenueShareRun.objects.filter(pk=latest.pk).update(status=RevenueShareRun.Status.SUPERSEDED)
    run = RevenueShareRun.objects.create(
        month=inputs.month,
        version=(latest.version + 1) if latest is not None else 1,
        status=RevenueShareRun.Status.FINAL if closed else RevenueShareRun.Status.PROVISIONAL,
        policy=policy,
        fee_share_units=inputs.fee_share.get("CNY", 0),
        exchange_fee_units=inputs.exchange_fee_units,
        membership_fees=sum(inputs.membership.values()),
        pool=result.pool,
        costs=result.costs,
        unpooled=unpooled,
        totals={
            "metrics": {m: sum(max(v, 0) for v in inputs.values.get(m, {}).values()) for m in METRICS},
            "membership": {codes.get(b, str(b)): fee for b, fee in sorted(inputs.membership.items())},
            "costs": [{"description": text, "amount": amount} for text, amount in inputs.costs],
        },
        input_digest=key,
        previous=latest,
        created_by=user,  # type: ignore[misc]
    )
    before = {s.bank_id: s for s in latest.statements.all()} if latest is not None else {}
    statements = []
    for bank, _code in inputs.banks:
        previous = before.get(bank)
        amount, cost = result.amounts[bank], result.cost_parts[bank]
        values = {m: inputs.values.get(m, {}).get(bank, 0) for m in METRICS}
        statements.append(
            RevenueShareStatement(
                run=run,
                bank_id=bank,
                **values,
                share=Decimal(_shown(result.shares[bank])),
                cost_share=Decimal(_shown(result.cost_shares[bank])),
                amount=amount,
                cost=cost,
                net=amount - cost,
                lines=result.lines[bank],
                previous=previous,
                amount_difference=None if latest is None else amount - (previous.amount if previous else 0),
                cost_difference=None if latest is None else cost - (previous.cost if previous else 0),
                net_difference=None if latest is None else (amount - cost) - (previous.net if previous else 0),
            )
        )
    RevenueShareStatement.objects.bulk_create(statements)
    audit_record(
        actor=actor,
        action="alliance.revenue_share.restate" if latest is not None else "alliance.revenue_share.run",
        obj=run,
        after={
            "month": f"{inputs.month:%Y-%m}",
            "version": run.version,
            "policy": policy.version,
            "pool": run.pool,
            "costs": run.costs,
            "digest": key,
        },
    )
    return run


def revenue_share_run(month: str | dt.date, *, actor: Actor = None, echo: IO[str] | None = None) -> RevenueShareRun:
    """The month's revenue share as a recorded job run (a second run of the month at the same time is refused)."""
    first = _month_checked(month)
    with job_run(JOB, period=f"{first:%Y-%m}", total=1, echo=echo) as progress:
        run = revenue_share_compute(first, actor=actor)
        progress.advance(1, version=run.version, statements=run.statements.count())
    return run
