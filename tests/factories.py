"""factory-boy factories, and the registry the admin-scoping walk uses: every admin-registered model needs one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.models import AuditLog, CalendarDay, JobRun
from core.scoping import ALLIANCE_OPERATORS
from members.models import BankOperator, MemberBank

PASSWORD = "pw-for-tests-1"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")

    @factory.post_generation
    def password(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        self.set_password(extracted or PASSWORD)
        if create:
            self.save(update_fields=["password"])


class StaffFactory(UserFactory):
    is_staff = True


class AllianceOperatorFactory(StaffFactory):
    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"alliance{n}")

    @factory.post_generation
    def groups(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            self.groups.add(Group.objects.get(name=ALLIANCE_OPERATORS))


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group

    name = factory.Sequence(lambda n: f"group {n}")


class MemberBankFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MemberBank

    code = factory.Sequence(lambda n: f"B{n:03d}")
    name_zh = factory.Sequence(lambda n: f"测试银行{n}")
    name_en = factory.Sequence(lambda n: f"Test Bank {n}")
    kind = MemberBank.Kind.JOINT_STOCK
    issuing_licence = True
    acquiring_licence = True
    joined_on = dt.date(2025, 1, 1)


class BankOperatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BankOperator

    user = factory.SubFactory(StaffFactory)
    bank = factory.SubFactory(MemberBankFactory)
    role = BankOperator.Role.OPERATOR


class AuditLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditLog

    actor_label = "system"
    action = "test.action"
    bank_id = factory.LazyFunction(lambda: MemberBankFactory().pk)


class JobRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JobRun

    job = factory.Sequence(lambda n: f"test.job{n}")
    status = JobRun.Status.SUCCEEDED


class CalendarDayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CalendarDay

    date = factory.Sequence(lambda n: dt.date(2040, 1, 1) + dt.timedelta(days=n))
    kind = CalendarDay.Kind.HOLIDAY
    name = "test holiday"


def _periodic_task() -> Any:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    return PeriodicTask.objects.create(
        name=f"test task {PeriodicTask.objects.count()}", task="core.ping", interval=interval
    )


def _model(label: str) -> Any:
    from django.apps import apps

    return apps.get_model(label)


class PointsProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.PointsProgram"

    bank = factory.SubFactory(MemberBankFactory)
    unit_code = factory.Sequence(lambda n: f"PTS{n:03d}")
    name = factory.Sequence(lambda n: f"Points {n}")
    point_value_cny = Decimal("0.005000")
    expiry_policy = "end_of_year"
    expiry_period = 2


class CardholderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.Cardholder"

    user = factory.SubFactory(UserFactory)
    display_name = factory.Sequence(lambda n: f"持卡人{n}")
    phone_encrypted = "not-encrypted-in-tests"
    phone_hash = factory.Sequence(lambda n: f"{n:064d}")
    phone_last4 = factory.Sequence(lambda n: f"{n % 10000:04d}")


def _ledger_points_account() -> Any:
    """A cardholder's wallet in a new bank's program, with some points earned."""
    from rewards.services import points_earn, wallet_account

    program = PointsProgramFactory()
    holder = CardholderFactory()
    points_earn(cardholder_id=holder.pk, program=program, amount=500, idempotency_key=f"factory:{program.pk}")
    return wallet_account(holder.pk, program)


def _ledger_row(label: str) -> Any:
    account = _ledger_points_account()
    if label == "rewards.account":
        return account
    from rewards import models as ledger

    if label == "rewards.ledgertransaction":
        return ledger.LedgerTransaction.objects.filter(entries__account=account).first()
    if label == "rewards.entry":
        return ledger.Entry.objects.filter(account=account).first()
    if label == "rewards.lot":
        return ledger.Lot.objects.filter(account=account).first()
    if label == "rewards.hold":
        from rewards.services import hold_create

        return hold_create(
            cardholder_id=account.owner_id, program=account.program, amount=10, idempotency_key=f"hold:{account.pk}"
        )
    if label == "rewards.adjustmentrequest":
        from rewards.services import adjustment_request

        return adjustment_request(
            cardholder_id=account.owner_id,
            program=account.program,
            amount=5,
            reason="goodwill",
            requested_by=StaffFactory(),
        )
    if label == "rewards.seal":
        from rewards.sealing import seal_pending

        seal_pending()
        return ledger.Seal.objects.order_by("-id").first()
    raise KeyError(label)


# Model label -> a callable that creates one row. Each call must create a row under a *new* member bank where the
# model is bank-scoped, so the walk can check that one bank's operator sees it and another's does not.
FACTORIES: dict[str, Any] = {
    "auth.user": UserFactory,
    "auth.group": GroupFactory,
    "core.auditlog": AuditLogFactory,
    "core.jobrun": JobRunFactory,
    "core.calendarday": CalendarDayFactory,
    "members.memberbank": MemberBankFactory,
    "members.bankoperator": BankOperatorFactory,
    "django_celery_beat.periodictask": _periodic_task,
    "rewards.account": lambda: _ledger_row("rewards.account"),
    "rewards.ledgertransaction": lambda: _ledger_row("rewards.ledgertransaction"),
    "rewards.entry": lambda: _ledger_row("rewards.entry"),
    "rewards.lot": lambda: _ledger_row("rewards.lot"),
    "rewards.hold": lambda: _ledger_row("rewards.hold"),
    "rewards.adjustmentrequest": lambda: _ledger_row("rewards.adjustmentrequest"),
    "rewards.seal": lambda: _ledger_row("rewards.seal"),
    "django_celery_beat.intervalschedule": lambda: _model("django_celery_beat.intervalschedule").objects.create(
        every=7, period="minutes"
    ),
    "django_celery_beat.crontabschedule": lambda: _model("django_celery_beat.crontabschedule").objects.create(
        minute="7", hour="7"
    ),
    "django_celery_beat.clockedschedule": lambda: _model("django_celery_beat.clockedschedule").objects.create(
        clocked_time=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ),
    "django_celery_beat.solarschedule": lambda: _model("django_celery_beat.solarschedule").objects.create(
        event="sunrise", latitude=_model("django_celery_beat.solarschedule").objects.count(), longitude=121.47
    ),
}
