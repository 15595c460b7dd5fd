"""Demo data for the whole platform, created through each app's services. Idempotent: a second run adds nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from core.scoping import ALLIANCE_OPERATORS
from members.demo import DEMO_PASSWORD


@dataclass
class DemoContext:
    scale: str = "small"
    out: Any = None
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, username, password)
    codes: list[tuple[str, str]] = field(default_factory=list)  # (what, code)
    demo_cardholder: str = ""  # the portal login the demo gives payments of its own

    def login(self, role: str, username: str, password: str = DEMO_PASSWORD) -> None:
        self.logins.append((role, username, password))


def seed_operators(ctx: DemoContext) -> None:
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username="alliance", defaults={"is_staff": True, "email": "ops@mengka.example"}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=ALLIANCE_OPERATORS))
    ctx.login("alliance operator (admin)", "alliance")


# Each step is one app's seeding; later apps append theirs. Order follows the dependency direction.
def seed_members(ctx: DemoContext) -> None:
    from members.demo import seed_members as seed

    seed(ctx)


def seed_payments(ctx: DemoContext) -> None:
    from payments.demo import seed_payments as seed

    seed(ctx)


def seed_rewards(ctx: DemoContext) -> None:
    from rewards.demo import seed_rewards as seed

    seed(ctx)


def seed_merchant_api(ctx: DemoContext) -> None:
    from merchants.demo import seed_merchant_api as seed

    seed(ctx)


STEPS: list[Callable[[DemoContext], None]] = [
    seed_operators,
    seed_members,
    seed_rewards,
    seed_payments,
    seed_merchant_api,
]


def seed_all(ctx: DemoContext) -> DemoContext:
    for step in STEPS:
        step(ctx)
    return ctx
