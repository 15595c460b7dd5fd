"""Four eyes on the revenue-share terms through the approval queue: one alliance operator submits, another approves
(in force) or rejects (a draft again); approved versions never change; bank operators keep none of it. And two runs of
a month at once never number two versions alike."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import translation

from alliance import services
from alliance.models import METRICS, AllianceCost, MembershipFee, RevenueSharePolicy, RevenueShareRun
from alliance.services import revenue_share
from core.approvals import approval_approve, approval_describe, approval_reject
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest, AuditLog
from tests.alliance.revenue_fixture import this_month
from tests.concurrency import Background, run_parallel, wait_for_lock_waiters
from tests.factories import AllianceOperatorFactory, MemberBankFactory, bank_operator, make_revenue_policy

pytestmark = pytest.mark.django_db

POOL = {m: Decimal(0) for m in METRICS} | {"issuer_volume": Decimal("0.6"), "active_cardholders": Decimal("0.4")}
COSTS = {m: Decimal(0) for m in METRICS} | {"merchants_sponsored": Decimal(1)}


def _draft(maker, **fields):  # type: ignore[no-untyped-def]
    values = {"weights": POOL, "cost_weights": COSTS, "effective_from": dt.date(2026, 11, 1), "reason": "yearly review"}
    return services.policy_save(policy_id=None, actor=maker, **(values | fields))


def _submit(model, version, maker, reason: str = "yearly review"):  # type: ignore[no-untyped-def]
    return services.terms_submit(model=model, version_id=version.pk, actor=maker, reason=reason)


def test_a_policy_goes_through_the_approval_queue_with_two_operators_and_every_step_audited() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    assert (policy.status, policy.version) == ("draft", 1)
    policy = services.policy_save(
        policy_id=policy.pk,
        weights=POOL | {"issuer_volume": Decimal("0.5"), "active_cardholders": Decimal("0.5")},
        cost_weights=COSTS,
        effective_from=dt.date(2026, 11, 1),
        actor=maker,
    )
    assert policy.weight_issuer_volume == Decimal("0.5")  # a draft may change
    request = _submit(RevenueSharePolicy, policy, maker)
    assert (request.kind, request.bank_id, request.maker_id, request.status) == (
        "alliance.revenue_share_terms",
        None,
        maker.pk,
        "pending",
    )
    assert request.payload["terms"]["weights"]["issuer_volume"] == "0.5000"
    policy.refresh_from_db()
    assert policy.status == "draft"  # nothing changes until a second operator approves

    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=maker)  # the maker may not check
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=bank_operator(MemberBankFactory()))  # nor a bank's operator
    request = approval_approve(request_id=request.pk, checker=checker)
    policy.refresh_from_db()
    assert (policy.status, request.checker_id) == ("approved", checker.pk)
    assert (request.result_type, request.result_id) == ("alliance.revenuesharepolicy", str(policy.pk))
    assert services.policy_in_force(dt.date(2026, 12, 1)).pk == policy.pk

    rows = AuditLog.objects.filter(object_type="alliance.revenuesharepolicy", object_id=str(policy.pk))
    actions = list(rows.order_by("id").values_list("action", flat=True))
    assert actions == ["alliance.policy.save", "alliance.policy.save", "alliance.revenuesharepolicy.approve"]
    assert rows.get(action__endswith="approve").after["maker"] == maker.pk
    steps = AuditLog.objects.filter(object_type="core.approvalrequest", object_id=str(request.pk))
    assert list(steps.order_by("id").values_list("action", flat=True)) == ["approval.request", "approval.approve"]


def test_a_submission_needs_a_reason_and_waits_one_at_a_time() -> None:
    maker = AllianceOperatorFactory()
    policy = _draft(maker, reason="")
    with pytest.raises(ValidationFailed):
        services.terms_submit(model=RevenueSharePolicy, version_id=policy.pk, actor=maker)  # its own reason: none
    assert not ApprovalRequest.objects.exists()
    _submit(RevenueSharePolicy, policy, maker)
    with pytest.raises(Conflict) as twice:
        _submit(RevenueSharePolicy, policy, maker)
    assert twice.value.code == "version_pending"
    assert ApprovalRequest.objects.count() == 1


def test_an_approved_version_is_never_edited_a_change_is_a_new_version() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    approval_approve(request_id=_submit(RevenueSharePolicy, policy, maker).pk, checker=checker)
    with pytest.raises(Conflict) as refused:
        services.policy_save(
            policy_id=policy.pk, weights=POOL, cost_weights=COSTS, effective_from=dt.date(2026, 11, 1), actor=maker
        )
    assert refused.value.code == "version_decided"
    with pytest.raises(Conflict):
        _submit(RevenueSharePolicy, policy, maker)
    # A change is a new version from the same month; once approved it is the one in force.
    newer = _draft(checker, weights=POOL | {"issuer_volume": Decimal("0.4"), "active_cardholders": Decimal("0.6")})
    assert newer.version == 2
    approval_approve(request_id=_submit(RevenueSharePolicy, newer, checker).pk, checker=maker)
    assert services.policy_in_force(dt.date(2026, 11, 1)).pk == newer.pk
    policy.refresh_from_db()
    assert policy.weight_issuer_volume == Decimal("0.6")


def test_a_waiting_version_is_not_edited_and_a_rejected_one_stays_a_draft() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    request = _submit(RevenueSharePolicy, policy, maker)
    with pytest.raises(Conflict) as waiting:
        services.policy_save(
            policy_id=policy.pk, weights=POOL, cost_weights=COSTS, effective_from=dt.date(2026, 11, 1), actor=maker
        )
    assert waiting.value.code == "version_pending"
    approval_reject(request_id=request.pk, checker=checker, reason="no")
    policy.refresh_from_db()
    assert policy.status == "draft"
    with translation.override("en"), pytest.raises(Exception, match="No approved revenue-share policy"):
        services.policy_in_force(dt.date(2026, 12, 1))
    # A draft again: it may change and be submitted again.
    services.policy_save(
        policy_id=policy.pk, weights=POOL, cost_weights=COSTS, effective_from=dt.date(2026, 12, 1), actor=maker
    )
    assert _submit(RevenueSharePolicy, policy, maker).status == "pending"


def test_applying_is_atomic_with_the_approval(monkeypatch: pytest.MonkeyPatch) -> None:
    """When applying fails after the version was marked, the approval and the version roll back together: the
    request still waits, the version is still a draft and nothing is in force."""
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    request = _submit(RevenueSharePolicy, policy, maker)

    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("audit store down")

    monkeypatch.setattr(revenue_share, "audit_record", broken)
    with pytest.raises(RuntimeError):
        approval_approve(request_id=request.pk, checker=checker)
    policy.refresh_from_db()
    request.refresh_from_db()
    assert (policy.status, request.status, request.checker_id) == ("draft", "pending", None)
    monkeypatch.undo()
    approval_approve(request_id=request.pk, checker=checker)
    policy.refresh_from_db()
    assert policy.status == "approved"


def test_a_version_changed_behind_the_request_is_not_approved() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    request = _submit(RevenueSharePolicy, policy, maker)
    RevenueSharePolicy.objects.filter(pk=policy.pk).update(effective_from=dt.date(2027, 1, 1))  # not through a service
    with pytest.raises(Conflict) as refused:
        approval_approve(request_id=request.pk, checker=checker)
    assert refused.value.code == "version_changed"
    policy.refresh_from_db()
    request.refresh_from_db()
    assert (policy.status, request.status) == ("draft", "pending")


@pytest.mark.parametrize(
    ("weights", "code"),
    [
        (POOL | {"issuer_volume": Decimal("0.5")}, "weights_not_one"),  # 0.9
        (POOL | {"issuer_volume": Decimal("1.6"), "active_cardholders": Decimal("-0.6")}, "invalid_weight"),
        (POOL | {"issuer_volume": Decimal("0.55555"), "active_cardholders": Decimal("0.44445")}, "invalid_weight"),
        (POOL | {"loyalty": Decimal(0)}, "invalid_weight"),
    ],
)
def test_weights_in_range_with_four_decimals_summing_to_one(weights: dict, code: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationFailed) as refused:
        _draft(AllianceOperatorFactory(), weights=weights)
    assert refused.value.code == code
    assert not RevenueSharePolicy.objects.exists()


def test_terms_start_on_the_first_of_a_month() -> None:
    with pytest.raises(ValidationFailed):
        _draft(AllianceOperatorFactory(), effective_from=dt.date(2026, 11, 2))


def test_bank_operators_keep_no_terms() -> None:
    operator = bank_operator(MemberBankFactory())
    with pytest.raises(PermissionDenied):
        _draft(operator)
    with pytest.raises(PermissionDenied):
        services.membership_fee_save(
            fee_id=None, bank_id=MemberBankFactory().pk, amount=1, effective_from=dt.date(2026, 1, 1), actor=operator
        )
    policy = _draft(AllianceOperatorFactory())
    with pytest.raises(PermissionDenied):
        services.terms_submit(model=RevenueSharePolicy, version_id=policy.pk, actor=operator)
    assert not ApprovalRequest.objects.exists()


def test_a_membership_fee_change_takes_two_operators_and_applies_from_its_month() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    bank = MemberBankFactory()
    fee = services.membership_fee_save(
        fee_id=None, bank_id=bank.pk, amount=80_000, effective_from=dt.date(2026, 1, 1), actor=maker
    )
    request = _submit(MembershipFee, fee, maker)
    with pytest.raises(PermissionDenied):
        approval_approve(request_id=request.pk, checker=maker)
    with translation.override("en"):
        assert [label for label, _ in approval_describe(request)] == ["terms", "effective from", "monthly fee"]
    approval_approve(request_id=request.pk, checker=checker)
    raise_ = services.membership_fee_save(
        fee_id=None, bank_id=bank.pk, amount=120_000, effective_from=dt.date(2026, 7, 1), actor=checker
    )
    approval_approve(request_id=_submit(MembershipFee, raise_, checker).pk, checker=maker)
    assert services.membership_fees_in_force(dt.date(2025, 12, 1)).get(bank.pk) is None
    assert services.membership_fees_in_force(dt.date(2026, 6, 1))[bank.pk] == 80_000
    assert services.membership_fees_in_force(dt.date(2026, 7, 1))[bank.pk] == 120_000
    with pytest.raises(ValidationFailed):
        services.membership_fee_save(
            fee_id=None, bank_id=bank.pk, amount=-1, effective_from=dt.date(2026, 7, 1), actor=maker
        )


# --- two runs at once ------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_runs_of_a_month_at_once_make_one_version() -> None:
    make_revenue_policy(status="approved", effective_from=dt.date(2020, 1, 1))
    month = this_month()

    def work(_: int) -> object:
        try:
            return services.revenue_share_run(month).pk
        except Conflict as exc:  # the other is running the month: refused, nothing written
            return exc.code

    results = run_parallel(2, work)
    assert RevenueShareRun.objects.filter(month=month).count() == 1
    run = RevenueShareRun.objects.get(month=month)
    assert set(results) <= {run.pk, "job_running"}
    assert run.pk in results


@pytest.mark.django_db(transaction=True)
def test_a_run_waits_for_the_month_in_flight_and_numbers_the_next_version() -> None:
    """The first computation holds the month (its transaction open); a second, with a cost added meanwhile, waits for
    the month's lock instead of reading "no version yet", then makes version 2 from the committed version 1."""
    make_revenue_policy(status="approved", effective_from=dt.date(2020, 1, 1))
    month = this_month()
    first = Background(lambda: services.revenue_share_compute(month).pk, hold_open=True)
    AllianceCost.objects.create(month=month, amount=10_000, description="arrived meanwhile")
    second = Background(lambda: services.revenue_share_compute(month).pk)
    wait_for_lock_waiters(1)
    first_pk = first.result()
    second_pk = second.result()
    runs = list(RevenueShareRun.objects.filter(month=month).order_by("version").values_list("pk", "version", "costs"))
    assert runs == [(first_pk, 1, 0), (second_pk, 2, 10_000)]
