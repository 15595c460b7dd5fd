"""A void (撤销) racing a settlement chunk on real connections: whichever takes the merchant's row first wins, and a
payment is never both voided and on a settlement line."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from django.utils import timezone

from core.errors import Conflict
from payments import services
from payments.models import PaymentIntent, SettlementLine
from payments.services import cancel, settlement
from tests.concurrency import Background
from tests.payments.settling import make_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def race(channel_fake: Any) -> dict[str, Any]:
    world = make_world()
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=5_000,
        currency="CNY",
        idempotency_key="race-pay",
        confirm=True,
    )
    assert intent.status == "succeeded"
    assert cancel.voidable_today(intent)
    assert intent.business_date is not None
    # The period its business date will be settled in, as the run will see it (built by hand: it has not closed yet).
    period = settlement.Period(
        cycle="t1",
        label="race",
        cutoff_at=timezone.now(),
        settle_on=intent.business_date + dt.timedelta(days=1),
        business_from=intent.business_date,
        business_to=intent.business_date,
    )
    return {**world, "intent": intent, "period": period}


def chunk(race: dict[str, Any]) -> tuple[int, int]:
    return settlement._settle_chunk(race["period"], [race["merchant"].pk], [])


def void(race: dict[str, Any]) -> PaymentIntent:
    return services.payment_cancel(
        merchant=race["merchant"], payment_id=race["intent"].public_id, idempotency_key="race-void"
    )


def test_a_void_waits_for_a_chunk_holding_its_merchant_then_refuses(race: dict[str, Any]) -> None:
    written = Background(lambda: chunk(race), hold_open=True)  # the chunk's work done, not committed
    voiding = Background(lambda: void(race))
    time.sleep(0.5)
    assert voiding._thread.is_alive()  # waiting on the merchant's row
    written.release()
    assert written.result() == (1, 1)
    with pytest.raises(Conflict, match="changed while canceling"):
        voiding.result()
    intent = PaymentIntent.objects.get(pk=race["intent"].pk)
    assert (intent.status, intent.canceled_at) == ("succeeded", None)
    assert SettlementLine.objects.filter(payment=intent).count() == 1


def test_a_chunk_waits_for_a_void_holding_the_merchant_then_leaves_the_payment_out(
    race: dict[str, Any], monkeypatch: Any
) -> None:
    claimed, go_on = threading.Event(), threading.Event()
    claim = cancel.attempt_claim

    def slow_claim(attempt: Any) -> bool:  # inside the cancel's transaction: its locks and its UPDATE held
        claimed.set()
        go_on.wait(timeout=30)
        return claim(attempt)

    monkeypatch.setattr(cancel, "attempt_claim", slow_claim)
    voiding = Background(lambda: void(race))
    try:
        assert claimed.wait(timeout=30)
        written = Background(lambda: chunk(race))
        time.sleep(0.5)
        assert written._thread.is_alive()  # waiting on the merchant's row
    finally:
        go_on.set()
    assert voiding.result().status == "canceled"
    assert written.result() == (0, 0)  # nothing left to settle: no batch, no line
    assert not SettlementLine.objects.exists()
