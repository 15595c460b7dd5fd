"""Demo ledger history for the cardholders the members demo created: earnings, a redemption, an exchange, a hold.

Idempotent: every posting has a stable idempotency key, so a second run posts nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from members.models import BindingStatus, Card, PointsProgram

from . import services


def seed_rewards(ctx: Any) -> None:
    cards = (
        Card.objects.filter(status=BindingStatus.ACTIVE, bank__points_program__active=True)
        .values_list("cardholder_id", "bank__points_program")
        .distinct()
        .order_by("cardholder_id", "bank__points_program")
    )
    limit = 200 if getattr(ctx, "scale", "small") == "large" else 20
    pairs = list(cards)
    if not pairs:
        return
    programs = {p.pk: p for p in PointsProgram.objects.filter(active=True)}
    holders: dict[int, list[int]] = {}
    for cardholder_id, program_id in pairs:
        if len(holders) >= limit and cardholder_id not in holders:
            break
        holders.setdefault(cardholder_id, []).append(program_id)
    today = services.today()
    for cardholder_id, program_ids in holders.items():
        for program_id in program_ids:
            program = programs[program_id]
            for n, (days_ago, amount) in enumerate([(200, 3000), (90, 1200), (20, 800)]):
                services.points_earn(
                    cardholder_id=cardholder_id,
                    program=program,
                    amount=amount,
                    idempotency_key=f"demo:earn:{cardholder_id}:{program_id}:{n}",
                    earned_on=today - dt.timedelta(days=days_ago),
                    metadata={"demo": True},
                )
            services.points_redeem(
                cardholder_id=cardholder_id,
                program=program,
                amount=500,
                idempotency_key=f"demo:redeem:{cardholder_id}:{program_id}",
                metadata={"demo": True},
            )
            services.hold_create(
                cardholder_id=cardholder_id,
                program=program,
                amount=200,
                idempotency_key=f"demo:hold:{cardholder_id}:{program_id}",
                expires_at=None,
            )
        source = programs[program_ids[0]]
        others = [p for pid, p in sorted(programs.items()) if pid != source.pk]
        if others:
            services.points_exchange(
                cardholder_id=cardholder_id,
                from_program=source,
                to_program=others[0],
                amount=1000,
                idempotency_key=f"demo:exchange:{cardholder_id}:{source.pk}:{others[0].pk}",
            )
    if getattr(ctx, "codes", None) is not None:
        ctx.codes.append(("ledger cardholders with history", str(len(holders))))
