"""Fees: the schedule in force at capture, exact splits, and the cumulative hand-back on refunds and reversals."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.money import allocate
from payments import fees, services
from payments.fees import fee_schedule_create
from payments.models import FeeSchedule, FeeSplit, PaymentIntent
from tests.factories import CardFactory, CardProductFactory, ChannelFactory, MemberBankFactory, MerchantFactory

pytestmark = pytest.mark.django_db
_keys = itertools.count()
D = Decimal


def key() -> str:
    return f"fee-{next(_keys)}"


def _schedule(**overrides: Any) -> FeeSchedule:
    values: dict[str, Any] = {
        "mdr_percent": D("0.6"),
        "issuer_share": D("60"),
        "acquirer_share": D("25"),
        "channel_share": D("10"),
        "alliance_share": D("5"),
        "effective_from": timezone.now() - dt.timedelta(days=1),
    }
    values.update(overrides)
    return fee_schedule_create(**values)


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=issuer))
    merchant = MerchantFactory(sponsor_bank=acquirer)
    channel = ChannelFactory(acquirer=acquirer)
    return {"card": card, "merchant": merchant, "channel": channel, "issuer": issuer, "acquirer": acquirer}


def pay(world: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=key(),
        confirm=True,
        **kw,
    )


def splits(intent: PaymentIntent, event: str = "capture") -> dict[str, int]:
    return dict(FeeSplit.objects.filter(payment=intent, event=event).values_list("party", "amount"))


def test_capture_records_fee_and_exact_split_with_banks(world: dict[str, Any]) -> None:
    _schedule(fixed=1)
    intent = pay(world, 10_001)  # 100.01 CNY × 0.6 % = 0.60006 CNY → 6000.6 → 6001 hundredths, + 1 fen fixed = 6101
    assert intent.fee == 6101
    parts = splits(intent)
    assert parts == {"issuer": 3661, "acquirer": 1525, "channel": 610, "alliance": 305}
    assert sum(parts.values()) == 6101
    banks = dict(FeeSplit.objects.filter(payment=intent).values_list("party", "bank_id"))
    assert banks == {
        "issuer": world["issuer"].pk,
        "acquirer": world["acquirer"].pk,
        "channel": world["acquirer"].pk,
        "alliance": None,
    }


def test_merchant_and_method_schedules_win_over_default_and_dates_pick_the_version(world: dict[str, Any]) -> None:
    now = timezone.now()
    default = _schedule(mdr_percent=D("1"))
    own = _schedule(merchant=world["merchant"], mdr_percent=D("0.38"), effective_from=now - dt.timedelta(hours=2))
    _schedule(merchant=world["merchant"], mdr_percent=D("0.2"), effective_from=now + dt.timedelta(days=1))
    own.refresh_from_db()
    assert own.effective_to == now + dt.timedelta(days=1)  # the open-ended version ends where the next starts
    at = fees.schedule_in_force
    assert at(merchant=world["merchant"], method="card", at=now) == own
    assert at(merchant=world["merchant"], method="card", at=now + dt.timedelta(days=2)).mdr_percent == D("0.2")
    assert at(merchant=MerchantFactory(), method="card", at=now) == default
    method_own = _schedule(merchant=world["merchant"], method="card", mdr_percent=D("0.1"))
    assert at(merchant=world["merchant"], method="card", at=now) == method_own
    assert at(merchant=world["merchant"], method="balance", at=now) == own
    assert pay(world, 10_000).fee == 1000  # 0.1 % of 100 CNY = 0.10 CNY


def test_no_schedule_no_fee(world: dict[str, Any]) -> None:
    intent = pay(world, 5_000)
    assert intent.fee == 0
    assert not FeeSplit.objects.filter(payment=intent).exists()


@pytest.mark.parametrize(
    ("shares", "code"),
    [
        ((D("60"), D("25"), D("10"), D("4")), "fee_shares_incomplete"),
        ((D("60"), D("45"), D("0"), D("-5")), "fee_shares_incomplete"),
    ],
)
def test_shares_must_cover_the_whole_fee(shares: tuple[Decimal, ...], code: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        _schedule(issuer_share=shares[0], acquirer_share=shares[1], channel_share=shares[2], alliance_share=shares[3])
    assert error.value.code == code
    assert FeeSchedule.objects.count() == 0


def test_overlapping_versions_are_refused(world: dict[str, Any]) -> None:
    now = timezone.now()
    _schedule(effective_from=now, effective_to=now + dt.timedelta(days=10))
    with pytest.raises(ValidationFailed) as error:
        _schedule(effective_from=now + dt.timedelta(days=5))
    assert error.value.code == "fee_schedule_overlap"
    assert FeeSchedule.objects.count() == 1


def test_partial_capture_charges_on_what_was_captured(world: dict[str, Any]) -> None:
    _schedule(mdr_percent=D("1"))
    intent = pay(world, 10_000, capture_method="manual")
    assert intent.fee == 0
    captured = services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=4_000
    )
    assert captured.fee == 4_000  # 1 % of 40.00 CNY = 0.40 CNY = 4000 hundredths of a fen
    assert sum(splits(captured).values()) == 4_000


def test_refunds_hand_back_cumulatively_and_a_full_refund_hands_back_everything(world: dict[str, Any]) -> None:
    _schedule(mdr_percent=D("0.6"))
    intent = pay(world, 10_001)  # fee 6001: issuer 3601, acquirer 1500, channel 600, alliance 300 (+rounding)
    parts = splits(intent)
    assert sum(parts.values()) == 6001
    for amount in (3_333, 3_333, 3_335):
        services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=amount
        )
    intent.refresh_from_db()
    assert intent.fee_returned == 6001
    assert fees.net_by_party(intent) == dict.fromkeys(parts, 0)
    first = FeeSplit.objects.filter(payment=intent, event="refund").order_by("id")[:4]
    # first refund: floor(part × 3333 / 10001) each
    assert {row.party: -row.amount for row in first} == {p: v * 3333 // 10001 for p, v in parts.items()}


def test_same_day_reversal_hands_back_whatever_is_left(world: dict[str, Any]) -> None:
    _schedule(mdr_percent=D("0.6"))
    intent = pay(world, 20_000)
    canceled = services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert canceled.status == PaymentIntent.Status.CANCELED
    assert canceled.fee_returned == canceled.fee == 12_000
    assert sum(splits(canceled, "reversal").values()) == -12_000


# --- properties ---------------------------------------------------------------------------------------------------

share = st.decimals(min_value=0, max_value=100, places=4)


@st.composite
def shares_covering_100(draw: Any) -> list[Decimal]:
    first = draw(st.decimals(min_value=0, max_value=100, places=4))
    second = draw(st.decimals(min_value=0, max_value=100 - first, places=4))
    third = draw(st.decimals(min_value=0, max_value=100 - first - second, places=4))
    return [first, second, third, D(100) - first - second - third]


@given(total=st.integers(min_value=0, max_value=10**15), weights=shares_covering_100())
def test_allocate_sums_exactly_and_stays_within_one_unit_of_the_exact_share(total: int, weights: list[Decimal]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        assert abs(D(part) - D(total) * weight / 100) < 1
    assert allocate(total, weights) == parts  # deterministic


@st.composite
def refund_sequences(draw: Any) -> tuple[int, list[int]]:
    captured = draw(st.integers(min_value=1, max_value=10**9))
    refunds: list[int] = []
    left = captured
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if left == 0:
            break
        amount = draw(st.integers(min_value=1, max_value=left))
        refunds.append(amount)
        left -= amount
    if draw(st.booleans()) and left:
        refunds.append(left)
    return captured, refunds


@settings(max_examples=300)
@given(
    sequence=refund_sequences(),
    mdr=st.decimals(min_value=0, max_value=10, places=4),
    fixed=st.integers(min_value=0, max_value=500),
    weights=shares_covering_100(),
)
def test_every_split_sums_exactly_for_every_refund_sequence(
    sequence: tuple[int, list[int]], mdr: Decimal, fixed: int, weights: list[Decimal]
) -> None:
    """Pure rule: capture parts sum to the fee; each refund's deltas are non-negative; a full refund returns all."""
    captured, refunds = sequence
    schedule = FeeSchedule(
        mdr_percent=mdr,
        fixed=fixed,
        issuer_share=weights[0],
        acquirer_share=weights[1],
        channel_share=weights[2],
        alliance_share=weights[3],
    )
    fee = fees.fee_for(schedule, captured)
    assert 0 <= fee <= captured * 100
    parts = fees.split(schedule, fee)
    assert sum(parts.values()) == fee
    returned = dict.fromkeys(parts, 0)
    refunded = 0
    for amount in refunds:
        refunded += amount
        target = fees.refunded_so_far(parts, refunded, captured)
        deltas = {party: target[party] - returned[party] for party in parts}
        assert all(delta >= 0 for delta in deltas.values())
        assert all(target[party] <= parts[party] for party in parts)
        returned = target
    if refunded == captured:
        assert returned == parts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=refund_sequences())
def test_recorded_splits_sum_exactly_per_event_through_the_services(
    world: dict[str, Any], sequence: tuple[int, list[int]]
) -> None:
    if not FeeSchedule.objects.exists():
        _schedule(
            mdr_percent=D("0.5321"),
            fixed=3,
            issuer_share=D("33.3333"),
            acquirer_share=D("33.3333"),
            channel_share=D("33.3334"),
            alliance_share=D("0"),
        )
    captured, refunds = sequence
    captured = captured % 10**7 + 1
    intent = pay(world, captured * 100 + 1)  # …01: never a fault trigger of the in-process channel
    captured = intent.amount_captured
    scale = captured / max(sum(refunds), 1) if refunds else 0
    parts = splits(intent)
    done = 0
    for amount in refunds:
        amount = max(1, min(int(amount * scale), captured - done))
        if 51 <= amount % 100 <= 56:
            amount -= 10  # the in-process channel's fault triggers: this test is about the arithmetic
        if done >= captured:
            break
        before = intent.fee_returned
        refund = services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=amount
        )
        assert refund.status == "succeeded"
        done += amount
        intent.refresh_from_db()
        assert intent.fee_returned == sum(fees.refunded_so_far(parts, done, captured).values())
        handed = -sum(FeeSplit.objects.filter(refund=refund).values_list("amount", flat=True))
        assert handed == intent.fee_returned - before
    intent.refresh_from_db()
    assert sum(splits(intent).values()) == intent.fee
    net = sum(FeeSplit.objects.filter(payment=intent).values_list("amount", flat=True))
    assert net == intent.fee - intent.fee_returned
    if done == captured:
        assert intent.fee_returned == intent.fee


def test_admin_adds_a_version_through_the_service_and_freezes_used_versions(world: dict[str, Any]) -> None:
    from django.test import Client
    from django.urls import reverse

    from core.models import AuditLog
    from tests.factories import PASSWORD, AllianceOperatorFactory

    old = _schedule(mdr_percent=D("0.6"), effective_from=timezone.now() - dt.timedelta(days=10))
    used = pay(world, 10_000)
    assert used.fee == 6_000
    client = Client()
    user = AllianceOperatorFactory()
    assert client.login(username=user.username, password=PASSWORD)
    starts = timezone.localtime() + dt.timedelta(days=1)
    data = {
        "merchant": "",
        "method": "",
        "mdr_percent": "0.5",
        "fixed": "0",
        "issuer_share": "50",
        "acquirer_share": "30",
        "channel_share": "15",
        "alliance_share": "5",
        "effective_from_0": starts.strftime("%Y-%m-%d"),
        "effective_from_1": starts.strftime("%H:%M:%S"),
        "effective_to_0": "",
        "effective_to_1": "",
    }
    response = client.post(reverse("admin:payments_feeschedule_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    old.refresh_from_db()
    assert old.effective_to is not None
    assert old.effective_to.replace(microsecond=0) == starts.replace(microsecond=0)
    assert AuditLog.objects.filter(action="fee_schedule.create", actor=user).count() == 1
    bad = dict(data, issuer_share="51")
    response = client.post(reverse("admin:payments_feeschedule_add"), bad)
    assert response.status_code == 200
    assert FeeSchedule.objects.count() == 2
    change = client.get(reverse("admin:payments_feeschedule_change", args=[old.pk]))
    assert change.status_code == 200
    assert not change.context["has_change_permission"]
