"""Four eyes on the revenue-share terms: one alliance operator proposes, another decides; decided versions never
change; bank operators keep none of it. And two runs of a month at once never number two versions alike."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import translation

from alliance import services
from alliance.models import METRICS, AllianceCost, MembershipFee, RevenueSharePolicy, RevenueShareRun
from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.models import AuditLog
from tests.alliance.revenue_fixture import this_month
from tests.concurrency import Background, run_parallel, wait_for_lock_waiters
from tests.factories import AllianceOperatorFactory, MemberBankFactory, bank_operator, make_revenue_policy

pytestmark = pytest.mark.django_db

POOL = {m: Decimal(0) for m in METRICS} | {"issuer_volume": Decimal("0.6"), "active_cardholders": Decimal("0.4")}
COSTS = {m: Decimal(0) for m in METRICS} | {"merchants_sponsored": Decimal(1)}


def _draft(maker, **fields):  # type: ignore[no-untyped-def]
    values = {"weights": POOL, "cost_weights": COSTS, "effective_from": dt.date(2026, 11, 1), "reason": "yearly review"}
    return services.policy_save(policy_id=None, actor=maker, **(values | fields))


def test_a_policy_goes_draft_pending_approved_with_two_operators_and_every_step_audited() -> None:
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
    services.terms_submit(model=RevenueSharePolicy, version_id=policy.pk, actor=maker)

    with pytest.raises(PermissionDenied):
        services.terms_decide(model=RevenueSharePolicy, version_id=policy.pk, approve=True, actor=maker)
    policy = services.terms_decide(model=RevenueSharePolicy, version_id=policy.pk, approve=True, actor=checker)
    assert (policy.status, policy.proposed_by_id, policy.decided_by_id) == ("approved", maker.pk, checker.pk)
    assert services.policy_in_force(dt.date(2026, 12, 1)).pk == policy.pk

    actions = list(AuditLog.objects.filter(object_id=str(policy.pk)).order_by("id").values_list("action", flat=True))
    assert actions == [
        "alliance.policy.save",
        "alliance.policy.save",
        "alliance.revenuesharepolicy.submit",
        "alliance.revenuesharepolicy.approve",
    ]


def test_an_approved_version_is_never_edited_a_change_is_a_new_version() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    services.terms_submit(model=RevenueSharePolicy, version_id=policy.pk, actor=maker)
    services.terms_decide(model=RevenueSharePolicy, version_id=policy.pk, approve=True, actor=checker)
    with pytest.raises(Conflict) as refused:
        services.policy_save(
            policy_id=policy.pk, weights=POOL, cost_weights=COSTS, effective_from=dt.date(2026, 11, 1), actor=maker
        )
    assert refused.value.code == "version_decided"
    with pytest.raises(Conflict):
        services.terms_decide(model=RevenueSharePolicy, version_id=policy.pk, approve=False, actor=checker)
    # A change is a new version from the same month; once approved it is the one in force.
    newer = _draft(checker, weights=POOL | {"issuer_volume": Decimal("0.4"), "active_cardholders": Decimal("0.6")})
    assert newer.version == 2
    services.terms_submit(model=RevenueSharePolicy, version_id=newer.pk, actor=checker)
    services.terms_decide(model=RevenueSharePolicy, version_id=newer.pk, approve=True, actor=maker)
    assert services.policy_in_force(dt.date(2026, 11, 1)).pk == newer.pk
    policy.refresh_from_db()
    assert policy.weight_issuer_volume == Decimal("0.6")


def test_a_pending_version_is_not_edited_and_a_rejected_one_never_applies() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    policy = _draft(maker)
    services.terms_submit(model=RevenueSharePolicy, version_id=policy.pk, actor=maker)
    with pytest.raises(Conflict):
        services.policy_save(
            policy_id=policy.pk, weights=POOL, cost_weights=COSTS, effective_from=dt.date(2026, 11, 1), actor=maker
        )
    services.terms_decide(model=RevenueSharePolicy, version_id=policy.pk, approve=False, actor=checker, note="no")
    policy.refresh_from_db()
    assert (policy.status, policy.decision_note) == ("rejected", "no")
    with translation.override("en"), pytest.raises(Exception, match="No approved revenue-share policy"):
        services.policy_in_force(dt.date(2026, 12, 1))


def test_the_database_refuses_a_checker_who_is_the_maker() -> None:
    maker = AllianceOperatorFactory()
    policy = make_revenue_policy(proposed_by=maker)
    with pytest.raises(IntegrityError), transaction.atomic():
        RevenueSharePolicy.objects.filter(pk=policy.pk).update(decided_by=maker, status="approved")


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


def test_a_membership_fee_change_takes_two_operators_and_applies_from_its_month() -> None:
    maker, checker = AllianceOperatorFactory(), AllianceOperatorFactory()
    bank = MemberBankFactory()
    fee = services.membership_fee_save(
        fee_id=None, bank_id=bank.pk, amount=80_000, effective_from=dt.date(2026, 1, 1), actor=maker
    )
    services.terms_submit(model=MembershipFee, version_id=fee.pk, actor=maker)
    with pytest.raises(PermissionDenied):
        services.terms_decide(model=MembershipFee, version_id=fee.pk, approve=True, actor=maker)
    services.terms_decide(model=MembershipFee, version_id=fee.pk, approve=True, actor=checker)
    raise_ = services.membership_fee_save(
        fee_id=None, bank_id=bank.pk, amount=120_000, effective_from=dt.date(2026, 7, 1), actor=checker
    )
    services.terms_submit(model=MembershipFee, version_id=raise_.pk, actor=checker)
    services.terms_decide(model=MembershipFee, version_id=raise_.pk, approve=True, actor=maker)
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
