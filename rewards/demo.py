"""Demo ledger history for the cardholders the members demo created: earnings, a redemption, an exchange, a hold.

The earnings are written in bulk (`points_earn_bulk`: one ledger transaction per batch, one entry per wallet), in three
batches of different ages, so every wallet has three lots with their own expiry dates; the redemptions, holds and
exchanges go one by one through their services. Idempotent: a batch holds only the wallets no earlier batch of its
age credited (under a key made from its contents), and every other posting has a stable idempotency key, so a second
run posts nothing, and a holder or card added since earns without anyone earning twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from core.jobs import job_run
from members.models import BindingStatus, Card, PointsProgram

from . import services
from .models import Entry, OwnerKind

LIMITS = {"small": 20, "large": 200}  # cardholders given a history
EARNINGS = ((200, 3000), (90, 1200), (20, 800))  # (days ago, points) of each wallet's three lots


def seed_rewards(ctx: Any) -> None:
    pairs = list(
        Card.objects.filter(status=BindingStatus.ACTIVE, bank__points_program__active=True)
        .values_list("cardholder_id", "bank__points_program")
        .distinct()
        .order_by("cardholder_id", "bank__points_program")
    )
    if not pairs:
        return
    scale, out = getattr(ctx, "scale", "small"), getattr(ctx, "out", None)
    limit = LIMITS.get(scale, LIMITS["small"])
    programs = {p.pk: p for p in PointsProgram.objects.filter(active=True)}
    holders: dict[int, list[int]] = {}
    for cardholder_id, program_id in pairs:
        if len(holders) >= limit and cardholder_id not in holders:
            break
        holders.setdefault(cardholder_id, []).append(program_id)
    wanted = [(holder, program) for holder, program_ids in holders.items() for program in program_ids]
    with job_run("rewards.seed_demo", period=scale, total=len(holders), echo=out) as run:
        for n, (days_ago, amount) in enumerate(EARNINGS):
            _earn_batch(n, wanted, amount, services.today() - dt.timedelta(days=days_ago))
        for cardholder_id, program_ids in holders.items():
            _spend(cardholder_id, [programs[pid] for pid in program_ids], programs)
            run.advance(1)


def _earn_batch(n: int, wanted: list[tuple[int, int]], amount: int, earned_on: dt.date) -> None:
    """The `n`th age's earn for every (holder, programme) in `wanted` that no batch of that age has credited yet."""
    prefix = f"demo:earn-batch:{n}:"
    credited = set(
        Entry.objects.filter(
            transaction__idempotency_key__startswith=prefix, account__owner_kind=OwnerKind.CARDHOLDER
        ).values_list("account__owner_id", "account__program_id")
    )
    missing = [pair for pair in wanted if pair not in credited]
    if not missing:
        return
    digest = hashlib.sha256(repr(missing).encode()).hexdigest()[:16]
    services.points_earn_bulk(
        events=[services.EarnEvent(cardholder_id=c, program_id=p, amount=amount) for c, p in missing],
        idempotency_key=prefix + digest,
        earned_on=earned_on,
        source=services.EarnSource.CAMPAIGN,
    )


def _spend(cardholder_id: int, own: list[PointsProgram], programs: dict[int, PointsProgram]) -> None:
    """A redemption and a hold in every programme the holder earns in, and an exchange out of the first."""
    for program in own:
        services.points_redeem(
            cardholder_id=cardholder_id,
            program=program,
            amount=500,
            idempotency_key=f"demo:redeem:{cardholder_id}:{program.pk}",
            metadata={"demo": True},
        )
        services.hold_create(
            cardholder_id=cardholder_id,
            program=program,
            amount=200,
            idempotency_key=f"demo:hold:{cardholder_id}:{program.pk}",
            expires_at=None,
        )
    source = own[0]
    others = [p for pid, p in sorted(programs.items()) if pid != source.pk]
    if others:
        services.points_exchange(
            cardholder_id=cardholder_id,
            from_program=source,
            to_program=others[0],
            amount=1000,
            idempotency_key=f"demo:exchange:{cardholder_id}:{source.pk}:{others[0].pk}",
        )
