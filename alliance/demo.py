"""Demo data for the whole platform, created through each app's services. Idempotent: a second run adds nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.urls import reverse

from core.scoping import ALLIANCE_OPERATORS
from members.demo import DEMO_PASSWORD


@dataclass
class DemoContext:
    scale: str = "small"
    out: Any = None
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, username, password)
    api_keys: list[tuple[str, str]] = field(default_factory=list)  # (merchant code, test key): shown once
    demo_cardholder: str = ""  # the portal login the demo gives payments of its own

    def login(self, role: str, username: str, password: str = DEMO_PASSWORD) -> None:
        self.logins.append((role, username, password))


def alliance_operator(username: str, email: str) -> Any:
    """A demo alliance operator with the demo password (created once)."""
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "email": email})
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=ALLIANCE_OPERATORS))
    return user


def seed_operators(ctx: DemoContext) -> None:
    alliance_operator("alliance", "ops@mengka.example")
    ctx.login("alliance operator (admin)", "alliance")


# Each step is one app's seeding; later apps append theirs. Order follows the dependency direction.
def seed_members(ctx: DemoContext) -> None:
    from members.demo import seed_members as seed

    seed(ctx)


def seed_merchants(ctx: DemoContext) -> None:
    """Before the promotions: the merchants they run at."""
    from payments.demo import seed_merchants as seed

    seed(ctx)


def seed_archived_month(ctx: DemoContext) -> None:
    """Before any other posting of the demo login's: its oldest movements are those of the archived month."""
    from rewards.demo import seed_archived_month as seed

    seed(ctx)


def seed_promotions(ctx: DemoContext) -> None:
    """Before the payments, so that the demo's payments are priced with them and spend some budgets down."""
    from rewards.demo import seed_promotions as seed

    seed(ctx)


def seed_payments(ctx: DemoContext) -> None:
    from payments.demo import seed_payments as seed

    seed(ctx)


def seed_archived_payments(ctx: DemoContext) -> None:
    """The month of the archived entries, archived for payments too: after every step whose job reads a period that
    month's payments fall in (the revenue share reads the refunds of payments as old as the refund window), as the
    partitions job archives a month only long after those jobs ran; such a job run now is refused
    (`period_archived`)."""
    from payments.demo import seed_archived_payments as seed
    from rewards.demo import ARCHIVED_MONTHS_AGO

    seed(ctx, months_ago=ARCHIVED_MONTHS_AGO)


def seed_rewards(ctx: DemoContext) -> None:
    from rewards.demo import seed_rewards as seed

    seed(ctx)


def seed_benefits(ctx: DemoContext) -> None:
    """After payments: the merchants that contribute vouchers exist by then."""
    from rewards.demo import seed_benefits as seed

    seed(ctx)


def seed_settlements(ctx: DemoContext) -> None:
    from payments.demo import seed_settlements as seed

    seed(ctx)


def seed_reconciliation(ctx: DemoContext) -> None:
    from payments.demo import seed_reconciliation as seed

    seed(ctx)


def seed_spending_history(ctx: DemoContext) -> None:
    """After clearing (which dates the obligations of the history's payments) and before the revenue share (whose
    months start with the earliest payment): the demo login's year of spending."""
    from payments.demo import seed_spending_history as seed

    seed(ctx)


def seed_disputes(ctx: DemoContext) -> None:
    from payments.demo import seed_disputes as seed

    seed(ctx)


def seed_merchant_api(ctx: DemoContext) -> None:
    from merchants.demo import seed_merchant_api as seed

    seed(ctx)


# --- clearing --------------------------------------------------------------------------------------------------------

CLEARING_CHANNEL_WAIT = 1.0  # seconds: the demo's clearing channel confirms at once (its delay set to 0)


def seed_clearing(ctx: DemoContext) -> None:
    """Clears every day of the demo's history (after settlement, which dates the payments): the ledger's obligations
    are spread over the settlement days (the demo posts them all "now"; `rewards.demo.date_obligations`), each day is
    cleared, and the instructions go through the simulator's clearing channel: every day's confirmed but the last
    day's, sent and not yet confirmed. Idempotent: skipped once a run exists."""
    import datetime as dt
    import time

    from django.conf import settings
    from django.utils import timezone

    from alliance import services
    from alliance.models import ClearingRun
    from payments.demo import settlement_days
    from payments.models import PaymentIntent
    from rewards.demo import date_obligations

    if ClearingRun.objects.exists():
        return
    today = timezone.localdate()
    days = [day for day in settlement_days(today) if day < today]
    if not days:
        return
    times = dict(PaymentIntent.objects.filter(livemode=True).values_list("public_id", "created_at"))
    dated = [day for day in date_obligations(days, times) if day < today]
    if not dated:
        return
    channel = _clearing_simulator(settings.SIMULATOR)
    first, last = dated[0], dated[-1]
    # Every day but the last: cleared, sent, confirmed at once. (Each day by name: the history may be older than the
    # daily job's catch-up reaches.)
    for day in dated[:-1]:
        services.clearing_run(day)
    if channel is not None:
        channel.set_faults(settings.CLEARING_CHANNEL, payout_delay_ms=0)
        services.instructions_send()
        time.sleep(CLEARING_CHANNEL_WAIT)
        services.instructions_poll(inquire_after=dt.timedelta(0))
    # The last day: cleared and sent, its confirmation not in yet (due ten minutes later).
    services.clearing_run(last)
    if channel is not None:
        channel.set_faults(settings.CLEARING_CHANNEL, payout_delay_ms=600_000)
        services.instructions_send()
        channel.close()
    if ctx.out is not None:
        statuses = sorted(ClearingRun.objects.values_list("status", flat=True))
        ctx.out.write(f"  clearing: {len(statuses)} runs over {first}–{last} ({', '.join(statuses)})\n")


def _clearing_simulator(config: dict[str, Any]) -> Any:
    """The simulator's admin client, when the simulator answers; else None."""
    from simulator.client import SimulatorClient

    client = SimulatorClient(config["URL"], key_id=config["KEY_ID"], secret=config["SECRET"])
    with contextlib.suppress(Exception):  # any failure means no simulator for the demo
        if client.healthy():
            return client
    client.close()
    return None


# --- segments --------------------------------------------------------------------------------------------------------

# The demo login's own travel and dining payments (merchant code, amount), enough for the default rules' frequent
# traveller and dining tags; made in turn with each of its cards, its last first (its first card paid the most in the
# steps before, and the demo's per-card velocity rule reviews a sixth payment within a minute).
SEGMENT_PAYMENTS = (*(("DEMO-TRAVEL", 128_800),) * 3, *(("DEMO-NOODLE", 8_800),) * 4)


def seed_segment_payments(ctx: DemoContext) -> None:
    """Before settlement: the demo login consents to personalised offers (unless it already chose) and pays at the
    travel agency and the noodle house. Idempotent: each payment made once, the consent only when never given nor
    withdrawn."""
    from members import services as members_services
    from members.models import Card, Cardholder, Consent, ConsentPurpose
    from merchants.models import Merchant
    from payments import services as payments_services
    from payments.models import PaymentIntent

    holder = Cardholder.objects.filter(user__username=ctx.demo_cardholder).first() if ctx.demo_cardholder else None
    if holder is not None:
        purpose = ConsentPurpose.PERSONALISED_OFFERS
        if not Consent.objects.filter(cardholder=holder, purpose=purpose).exists():
            members_services.consent_grant(cardholder=holder, purpose=purpose)
        cards = list(Card.objects.filter(cardholder=holder, status="active").order_by("pk"))
        merchants = {m.code: m for m in Merchant.objects.filter(code__in={code for code, _a in SEGMENT_PAYMENTS})}
        # Only where the demo's payments went through (the channel simulator answered).
        paid = PaymentIntent.objects.filter(metadata__demo=True).exists()
        made = set(
            PaymentIntent.objects.filter(metadata__has_key="demo_segments").values_list(
                "metadata__demo_segments", flat=True
            )
        )
        if cards and paid and len(merchants) == len({code for code, _a in SEGMENT_PAYMENTS}):
            for n, (code, amount) in enumerate(SEGMENT_PAYMENTS):
                if n in made:
                    continue
                payments_services.payment_create(
                    merchant=merchants[code],
                    cardholder=holder,
                    card=cards[-1 - n % len(cards)],
                    amount=amount,
                    currency="CNY",
                    idempotency_key=f"demo-segments-{n}",
                    confirm=True,
                    metadata={"demo_segments": n},
                    description="demo",
                )


def seed_segments(ctx: DemoContext) -> None:
    """After settlement has dated the demo's payments and the demo login's year of spending is made: the segment job,
    as the night would run it. The demo login carries the dining and frequent traveller tags with their figures,
    besides its operator-set tag. A second run changes nothing."""
    from alliance import services

    report = services.segments_compute()
    if ctx.out is not None:
        ctx.out.write(f"  segments: {report.qualified} tags derived, {report.cardholders} cardholders' tags changed\n")


def seed_revenue_share(ctx: DemoContext) -> None:
    """Last: the revenue share of the demo's months, from everything the steps before made. A second alliance
    operator proposes or approves what "alliance" does not (four eyes)."""
    from .revenue_demo import seed_revenue_share as seed

    checker = alliance_operator("alliance-checker", "ops2@mengka.example")
    ctx.login("alliance operator, second pair of eyes (admin)", "alliance-checker")
    seed(ctx, checker=checker)


def seed_approvals(ctx: DemoContext) -> None:
    """Last, once the merchants, cards and operators exist: a request of each kind of the approval queue, asked by a
    bank operator and waiting for the alliance operators, and two decided ones for the history."""
    from .approvals_demo import seed_approvals as seed

    seed(ctx)


STEPS: list[Callable[[DemoContext], None]] = [
    seed_operators,
    seed_members,
    seed_archived_month,
    seed_rewards,
    seed_merchants,
    seed_promotions,
    seed_payments,
    seed_segment_payments,
    seed_benefits,
    seed_merchant_api,
    seed_settlements,
    seed_reconciliation,
    seed_disputes,
    seed_clearing,
    seed_spending_history,
    seed_segments,
    seed_revenue_share,
    seed_archived_payments,
    seed_approvals,
]


def seed_all(ctx: DemoContext) -> DemoContext:
    for step in STEPS:
        step(ctx)
    return ctx


def summary(ctx: DemoContext, *, site: str, simulator: str) -> list[str]:
    """What to print once the demo is ready, in a few lines: where things are, who signs in where, the test keys."""
    site = site.rstrip("/")
    usernames = [username for _role, username, _password in ctx.logins]
    staff = set(
        get_user_model().objects.filter(username__in=usernames, is_staff=True).values_list("username", flat=True)
    )
    passwords = {username: password for _role, username, password in ctx.logins}
    shared = next(iter(set(passwords.values()))) if len(set(passwords.values())) == 1 else None

    def who(names: list[str]) -> str:
        return ", ".join(name if shared else f"{name} / {passwords[name]}" for name in names)

    portal = [name for name in usernames if name not in staff]
    admin = [name for name in usernames if name in staff]
    lines = ["Demo data ready." + (f" Every demo login's password is {shared}." if shared else "")]
    rows = [
        ("site", f"{site}{reverse('home')}", f"cardholder: {who(portal)}" if portal else ""),
        ("admin", f"{site}{reverse('admin:index')}", f"operators: {who(admin)}" if admin else ""),
        ("API docs", f"{site}{reverse('api-docs')}", "the merchant API"),
        ("simulator", simulator.rstrip("/") + "/", "the channels' side (docs/simulator.md)"),
    ]
    lines += [f"  {name:<10} {url:<36} {note}".rstrip() for name, url, note in rows]
    keys = [f"{merchant:<12} {key}" for merchant, key in ctx.api_keys]
    keys.append(
        ("(shown once" if ctx.api_keys else "(shown by the run that made them")
        + "; `manage.py create_merchant_key <merchant>` makes another)"
    )
    lines += [f"  {'test keys' if n == 0 else '':<10} {text}" for n, text in enumerate(keys)]
    return lines
