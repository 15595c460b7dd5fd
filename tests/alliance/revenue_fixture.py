"""A small month of alliance activity whose revenue-share metrics are worked out by hand in the tests.

Three banks (RA, RB, RC), three cardholders, three merchants; payments, refunds and fee splits of the month (and a
few that must not count: the month before, voided, test mode, HKD), vouchers of benefits, and two points exchanges
through the ledger (one partly reversed). The month is the current one: ledger postings and vouchers are dated now.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone

from core.calendar import SHANGHAI, local_now
from members.models import MemberBank
from payments.models import FeeSchedule, FeeSplit, PaymentIntent, Refund
from tests.factories import (
    CardFactory,
    CardholderFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_benefit,
)

_serial = itertools.count(1)


@dataclass
class Month:
    month: dt.date
    banks: dict[str, MemberBank]
    objects: dict[str, Any]


def this_month() -> dt.date:
    return local_now().date().replace(day=1)


def _payment(holder: Any, card: Any, merchant: Any, amount: int, day: dt.date, **fields: Any) -> PaymentIntent:
    values: dict[str, Any] = {
        "merchant": merchant,
        "cardholder": holder,
        "card": card,
        "issuer": card.bank,
        "acquirer": merchant.sponsor_bank,
        "amount": amount,
        "amount_captured": amount,
        "status": "succeeded",
        "business_date": day,
        # Made that day: the database holds a business date to the capture window from the creation.
        "created_at": dt.datetime.combine(day, dt.time(12), tzinfo=SHANGHAI),
        **fields,
    }
    return PaymentIntent.objects.create(**values)


def _refund(payment: PaymentIntent, amount: int, day: dt.date, status: str = "succeeded") -> Refund:
    return Refund.objects.create(
        intent=payment,
        intent_created_at=payment.created_at,
        merchant_id=payment.merchant_id,
        amount=amount,
        reference=f"rf-{next(_serial)}",
        status=status,
        business_date=day,
    )


def _voucher(benefit: Any, card: Any, cost: int, state: str, issued_at: dt.datetime) -> Any:
    from rewards.models import Voucher

    n = next(_serial)
    return Voucher.objects.create(
        benefit=benefit,
        cardholder=card.cardholder,
        card=card,
        code_hash=f"{n:064d}",
        code_encrypted="x",
        code_hint=f"{n:04d}",
        state=state,
        idempotency_key=f"voucher-{n}",
        request_hash="0" * 64,
        cost_units=cost,
        month=f"{issued_at:%Y-%m}",
        issued_at=issued_at,
        expires_at=issued_at + dt.timedelta(days=30),
    )


def build_month() -> Month:
    from rewards import services as rewards_services

    month = this_month()
    day = month + dt.timedelta(days=1)  # the 2nd: a business date in the month
    before = month - dt.timedelta(days=1)  # the last day of the month before
    banks = {code: MemberBankFactory(code=code) for code in ("RA", "RB", "RC")}
    a, b, c = banks["RA"], banks["RB"], banks["RC"]
    h1, h2, h3 = CardholderFactory(), CardholderFactory(), CardholderFactory()
    card_1a = CardFactory(cardholder=h1, product=CardProductFactory(bank=a))
    card_2a = CardFactory(cardholder=h2, product=CardProductFactory(bank=a))
    card_2b = CardFactory(cardholder=h2, product=CardProductFactory(bank=b))
    card_3c = CardFactory(cardholder=h3, product=CardProductFactory(bank=c))
    m1 = MerchantFactory(sponsor_bank=a)
    m2 = MerchantFactory(sponsor_bank=b)
    m3 = MerchantFactory(sponsor_bank=b)

    p1 = _payment(h1, card_1a, m1, 10_000, day)
    _payment(h1, card_1a, m2, 5_000, day)
    p3 = _payment(h2, card_2b, m2, 20_000, day)
    _payment(h2, card_2a, m3, 3_000, day)
    p5 = _payment(h3, card_3c, m1, 7_000, before)  # the month before: only its refund counts
    p6 = _payment(h3, card_3c, m3, 4_000, day, status="canceled")  # voided (撤销)
    _payment(h3, card_3c, m1, 9_999, day, livemode=False)  # test mode
    p8 = _payment(h3, card_3c, m1, 8_800, day, currency="HKD")
    r1 = _refund(p3, 5_000, day)
    _refund(p1, 1_000, day, status="failed")
    r5 = _refund(p5, 2_000, day)

    schedule = FeeSchedule.objects.create(
        mdr_percent="0.6",
        issuer_share="60",
        acquirer_share="25",
        channel_share="10",
        alliance_share="5",
        effective_from=timezone.now() - dt.timedelta(days=400),
    )

    def split(payment: PaymentIntent, amount: int, event: str = "capture", refund: Refund | None = None) -> None:
        FeeSplit.objects.create(
            payment=payment, payment_created_at=payment.created_at, refund=refund, schedule=schedule, event=event,
            party="alliance", amount=amount,
        )  # fmt: skip

    split(p1, 600)
    split(p3, 1_200)
    split(p3, -300, "refund", r1)
    split(p5, 420)  # captured the month before
    split(p5, -120, "refund", r5)
    split(p6, 240)
    split(p6, -240, "reversal")
    split(p8, 528)  # HKD
    FeeSplit.objects.create(
        payment=p1, payment_created_at=p1.created_at, schedule=schedule, event="capture", party="issuer", bank=a,
        amount=7_200,
    )  # fmt: skip

    program_a = PointsProgramFactory(bank=a, point_value_cny=Decimal("0.005"))
    program_b = PointsProgramFactory(bank=b, point_value_cny=Decimal("0.003"))
    now = timezone.now()
    last_month = dt.datetime.combine(before, dt.time(12), tzinfo=SHANGHAI)
    x = make_benefit(bank=a)
    y = make_benefit(bank=b, funding_merchant=m2)
    z = make_benefit(bank=c)
    _voucher(x, card_2b, 30_000, "redeemed", now)
    _voucher(x, card_1a, 20_000, "issued", now)  # A's own cardholder
    _voucher(x, card_3c, 15_000, "cancelled", now)
    _voucher(x, card_3c, 12_500, "expired", now)
    _voucher(y, card_1a, 9_000, "issued", now)  # a merchant funds it
    _voucher(z, card_1a, 7_000, "issued", last_month)
    _voucher(z, card_2b, 5_000, "issued", now)

    # Exchanges at the policy in force since 2020 (fee 2 %): A's points are worth 0.005, B's 0.003.
    rewards_services.points_earn(cardholder_id=h1.pk, program=program_a, amount=2_000, idempotency_key="fx-earn-1")
    rewards_services.points_earn(cardholder_id=h2.pk, program=program_b, amount=2_000, idempotency_key="fx-earn-2")
    first = rewards_services.points_exchange(
        cardholder_id=h1.pk, from_program=program_a, to_program=program_b, amount=1_000, idempotency_key="fx-1"
    )
    rewards_services.transaction_reverse(transaction_id=first.pk, amount=333, idempotency_key="fx-1-back")
    rewards_services.points_exchange(
        cardholder_id=h2.pk, from_program=program_b, to_program=program_a, amount=1_000, idempotency_key="fx-2"
    )
    return Month(month=month, banks=banks, objects={"merchants": (m1, m2, m3), "holders": (h1, h2, h3)})
