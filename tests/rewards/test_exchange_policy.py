"""The alliance's exchange policy as versioned data: the version in force is chosen by date, a new version changes the
quote, a version in force never changes, and the admin (alliance operators only) goes through the same service."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from core.errors import Conflict, NotFound, ValidationFailed
from core.models import AuditLog
from rewards import services as s
from rewards.models import ExchangePolicy
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    PointsProgramFactory,
    make_cardholder,
    make_exchange_policy,
)

pytestmark = pytest.mark.django_db


def first_version() -> ExchangePolicy:
    return ExchangePolicy.objects.get(effective_from=dt.datetime(2020, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")))


def programs():  # type: ignore[no-untyped-def]
    return (
        PointsProgramFactory(point_value_cny=Decimal("0.01")),
        PointsProgramFactory(point_value_cny=Decimal("0.005")),
    )


def admin_client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client(headers={"accept-language": "en"})
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_the_migration_seeds_the_terms_the_settings_held() -> None:
    policy = first_version()
    assert (policy.fee_rate, policy.minimum_points, policy.created_by) == (Decimal("0.0200"), 100, None)
    assert s.exchange_policy_in_force() == policy


def test_the_version_in_force_is_the_latest_that_has_started() -> None:
    now = timezone.now()
    started = make_exchange_policy(effective_from=now - dt.timedelta(hours=1), fee_rate=Decimal("0.03"))
    upcoming = make_exchange_policy(effective_from=now + dt.timedelta(days=2), fee_rate=Decimal("0.04"))
    assert s.exchange_policy_in_force() == started
    assert s.exchange_policy_in_force(at=now + dt.timedelta(days=3)) == upcoming
    assert s.exchange_policy_in_force(at=now - dt.timedelta(days=1)) == first_version()


def test_with_no_version_in_force_an_exchange_is_refused_clearly() -> None:
    ExchangePolicy.objects.all().delete()
    make_exchange_policy()  # only a future one
    src, dst = programs()
    with translation.override("en"), pytest.raises(NotFound, match="no exchange policy in force"):
        s.exchange_quote(from_program=src, to_program=dst, amount=1_000)


def test_a_new_version_changes_the_quote_and_the_minimum() -> None:
    src, dst = programs()
    before = s.exchange_quote(from_program=src, to_program=dst, amount=1_000)
    # 0.01 × 0.98 / 0.005 = 1.96: 1960 points out; the paying bank owes CNY 10, the receiving bank gets 9.80.
    assert (before.rate, before.points_out, before.payer_units, before.payee_units, before.fee_units) == (
        Decimal("1.96"),
        1_960,
        100_000,
        98_000,
        2_000,
    )
    with translation.override("en"), pytest.raises(ValidationFailed, match="minimum exchange is 100 points"):
        s.exchange_quote(from_program=src, to_program=dst, amount=50)
    operator = AllianceOperatorFactory()
    new = s.exchange_policy_save(
        policy_id=None, fee_rate=Decimal("0.05"), minimum_points=10, effective_from=None, actor=operator
    )
    assert new.created_by == operator
    after = s.exchange_quote(from_program=src, to_program=dst, amount=1_000)
    assert (after.rate, after.points_out, after.payee_units, after.fee_units, after.policy_id) == (
        Decimal("1.9"),
        1_900,
        95_000,
        5_000,
        new.pk,
    )
    assert s.exchange_quote(from_program=src, to_program=dst, amount=50).points_out == 95
    assert AuditLog.objects.filter(action="rewards.exchange_policy.add", object_id=str(new.pk)).count() == 1


def test_an_exchange_records_the_policy_it_was_made_under() -> None:
    src, dst = programs()
    holder_id = make_cardholder().pk
    s.points_earn(cardholder_id=holder_id, program=src, amount=500, idempotency_key="earn")
    exchange = s.points_exchange(
        cardholder_id=holder_id, from_program=src, to_program=dst, amount=500, idempotency_key="x"
    )
    assert exchange.metadata["exchange_policy_id"] == first_version().pk
    assert exchange.metadata["fee_rate"] == "0.0200"


def test_a_version_in_force_can_neither_change_nor_go() -> None:
    policy, operator = first_version(), AllianceOperatorFactory()
    with pytest.raises(Conflict) as refused:
        s.exchange_policy_save(
            policy_id=policy.pk, fee_rate=Decimal("0.5"), minimum_points=1, effective_from=None, actor=operator
        )
    assert refused.value.code == "policy_in_force"
    with pytest.raises(Conflict):
        s.exchange_policy_delete(policy_id=policy.pk, actor=operator)
    policy.refresh_from_db()
    assert (policy.fee_rate, policy.minimum_points) == (Decimal("0.0200"), 100)
    assert not AuditLog.objects.filter(action__startswith="rewards.exchange_policy").exists()


def test_a_version_never_starts_in_the_past_and_its_values_are_in_range() -> None:
    operator = AllianceOperatorFactory()
    bad = [
        ({"effective_from": timezone.now() - dt.timedelta(minutes=1)}, "effective_from"),
        ({"fee_rate": Decimal("1")}, "fee_rate"),
        ({"fee_rate": Decimal("-0.01")}, "fee_rate"),
        ({"fee_rate": Decimal("0.00001")}, "fee_rate"),
        ({"minimum_points": 0}, "minimum_points"),
    ]
    for override, param in bad:
        fields = {"fee_rate": Decimal("0.01"), "minimum_points": 10, "effective_from": None, **override}
        with pytest.raises(ValidationFailed) as refused:
            s.exchange_policy_save(policy_id=None, actor=operator, **fields)  # type: ignore[arg-type]
        assert refused.value.param == param
    assert ExchangePolicy.objects.count() == 1


def test_a_version_not_yet_in_force_may_be_edited_or_withdrawn() -> None:
    operator = AllianceOperatorFactory()
    later = timezone.now() + dt.timedelta(days=5)
    upcoming = s.exchange_policy_save(
        policy_id=None, fee_rate=Decimal("0.03"), minimum_points=50, effective_from=later, actor=operator
    )
    s.exchange_policy_save(
        policy_id=upcoming.pk, fee_rate=Decimal("0.025"), minimum_points=60, effective_from=later, actor=operator
    )
    upcoming.refresh_from_db()
    assert (upcoming.fee_rate, upcoming.minimum_points) == (Decimal("0.025"), 60)
    change = AuditLog.objects.get(action="rewards.exchange_policy.change")
    assert (change.before["fee_rate"], change.after["fee_rate"]) == ("0.0300", "0.0250")
    s.exchange_policy_delete(policy_id=upcoming.pk, actor=operator)
    assert not ExchangePolicy.objects.filter(pk=upcoming.pk).exists()
    assert AuditLog.objects.filter(action="rewards.exchange_policy.delete", object_id=str(upcoming.pk)).exists()


def test_the_admin_adds_a_version_and_shows_one_in_force_read_only() -> None:
    operator = AllianceOperatorFactory()
    client = admin_client(operator)
    add = reverse("admin:rewards_exchangepolicy_add")
    response = client.post(
        add, {"fee_rate": "0.015", "minimum_points": "200", "effective_from_0": "", "effective_from_1": ""}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    new = ExchangePolicy.objects.get(minimum_points=200)
    assert (new.fee_rate, new.created_by, s.exchange_policy_in_force()) == (Decimal("0.015"), operator, new)
    assert AuditLog.objects.filter(action="rewards.exchange_policy.add", actor=operator).count() == 1

    # A start in the past is shown by its field, and nothing is written.
    past = timezone.localtime() - dt.timedelta(days=1)
    response = client.post(
        add,
        {
            "fee_rate": "0.01",
            "minimum_points": "1",
            "effective_from_0": past.strftime("%Y-%m-%d"),
            "effective_from_1": past.strftime("%H:%M:%S"),
        },
    )
    assert response.status_code == 200
    assert "never in the past" in str(response.context["adminform"].form.errors["effective_from"])
    assert ExchangePolicy.objects.count() == 2

    # The version in force: its page is read-only, a change posted anyway is refused and changes nothing.
    change = reverse("admin:rewards_exchangepolicy_change", args=[new.pk])
    page = client.get(change)
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert not page.context["has_delete_permission"]
    assert client.post(change, {"fee_rate": "0.5", "minimum_points": "1"}).status_code == 403
    assert (
        client.post(reverse("admin:rewards_exchangepolicy_delete", args=[new.pk]), {"post": "yes"}).status_code == 403
    )
    new.refresh_from_db()
    assert (new.fee_rate, new.minimum_points) == (Decimal("0.015"), 200)
