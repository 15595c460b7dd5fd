"""Channels, routing rules and channel health: what routing chooses among."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from core.audit import audit_record, snapshot
from core.errors import ValidationFailed
from core.money import validate_minor_amount
from members.models import MemberBank

from .. import routing
from ..connectors import get_connector
from ..connectors.base import Outcome, ReferenceRequest
from ..health import health_store
from ..models import Channel, PaymentMethod, RoutingRule, RuleChannel


@transaction.atomic
def channel_create(
    *,
    code: str,
    name: str,
    kind: str,
    acquirer: MemberBank,
    methods: list[str],
    currencies: list[str],
    connector: str = "simulator",
    remote_id: str = "",
    fee_percent: Decimal = Decimal("0.6"),
    fee_fixed: int = 0,
    sandbox: bool = False,
    actor: Any = None,
) -> Channel:
    """A channel is carried by an acquirer of record: a member with an acquiring licence (Mengka never holds funds)."""
    if not acquirer.acquiring_licence:
        raise ValidationFailed("The acquirer of record must hold an acquiring licence.", param="acquirer")
    unknown = set(methods) - set(PaymentMethod.values)
    if unknown:
        raise ValidationFailed(f"Unknown payment methods: {', '.join(sorted(unknown))}.", param="methods")
    for currency in currencies:
        validate_minor_amount(1, currency, param="currencies")
    channel = Channel(
        code=code,
        name=name,
        kind=kind,
        acquirer=acquirer,
        methods=methods,
        currencies=currencies,
        connector=connector,
        remote_id=remote_id,
        fee_percent=fee_percent,
        fee_fixed=fee_fixed,
        sandbox=sandbox,
    )
    channel.full_clean()
    channel.save()
    audit_record(actor=actor, action="channel.create", obj=channel, after=snapshot(channel), bank_id=acquirer.pk)
    transaction.on_commit(routing.config_changed)
    return channel


@transaction.atomic
def routing_rule_create(
    *,
    name: str,
    strategy: str,
    priority: int = 100,
    channels: list[tuple[Channel, int]] | None = None,
    actor: Any = None,
    **conditions: Any,
) -> RoutingRule:
    """A rule with its channels as (channel, weight) in priority order."""
    rule = RoutingRule(name=name, strategy=strategy, priority=priority, **conditions)
    rule.full_clean()
    rule.save()
    for position, (channel, weight) in enumerate(channels or [], start=1):
        RuleChannel.objects.create(rule=rule, channel=channel, position=position, weight=weight)
    audit_record(actor=actor, action="routing_rule.create", obj=rule, after=snapshot(rule))
    transaction.on_commit(routing.config_changed)
    return rule


# --- routing configuration and channel health ----------------------------------------------------------------------


def routing_config_changed(*, actor: Any = None, what: str = "") -> None:
    """Every process reloads channels, rules and error policies (within ROUTING_CONFIG_TTL)."""
    routing.config_changed()


def channels_probe() -> dict[str, str]:
    """Health probe: an inquiry for a reference that cannot exist tells whether a channel answers at all. A channel
    whose breaker is half-open gets its probe this way, so it closes again without risking a real payment."""
    config = routing.load_config()
    store = health_store()
    states: dict[str, str] = {}
    for info in config.channels.values():
        if not info.enabled:
            continue
        state = store.state(info.code, info.breaker)
        if state == "closed":
            states[info.code] = state
            continue
        if not store.allow(info.code, info.breaker):
            states[info.code] = str(state)
            continue
        try:
            inquiry = get_connector(info.connector).inquire(ReferenceRequest(info.remote_id, "health-probe"))
            alive = inquiry.outcome == Outcome.APPROVED
        except Exception:
            alive = False
        states[info.code] = str(store.record(info.code, "probe", alive, info.breaker))
    return states
