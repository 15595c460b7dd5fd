"""The portal's pages cost the same number of queries whatever the cardholder's history: a cardholder with 10 cards
and 10,000 payments (bulk-seeded) against one with a card and a payment. A regression that adds a query per card, per
payment or per line fails here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.calendar import SHANGHAI
from payments.models import PaymentIntent, Refund
from rewards import services as ledger
from tests.factories import (
    PASSWORD,
    CardFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_cardholder,
)

pytestmark = pytest.mark.django_db

REFUND_EVERY = 20
PROMOTION = {"promotion": "promo_bulk", "name": "¥5 off", "kind": "amount_off", "discount": 500, "points": 0}


def seed_holder(cards: int, payments: int) -> dict[str, Any]:
    """A signed-in cardholder with `cards` cards at as many banks (each with its programme and points earned), and
    `payments` captured payments spread over the last year, bulk-inserted: every 7th with a promotion, every 20th
    partly refunded. The 20 newest payments earned their points through the ledger."""
    holder = make_cardholder()
    banks = [MemberBankFactory() for _ in range(cards)]
    programs = [PointsProgramFactory(bank=bank) for bank in banks]
    own = [CardFactory(cardholder=holder, product=CardProductFactory(bank=bank)) for bank in banks]
    merchants = [MerchantFactory(spend_category=c) for c in ("dining", "online", "travel", "groceries", "fuel")]
    rows = [
        PaymentIntent(
            merchant=merchants[n % len(merchants)],
            cardholder=holder,
            card=own[n % cards],
            issuer_id=own[n % cards].bank_id,
            amount=1_000 + n,
            amount_captured=1_000 + n,
            status=PaymentIntent.Status.SUCCEEDED,
            spend_category=merchants[n % len(merchants)].spend_category,
            points_earned=10 + n % 50,
            discount_amount=500 if n % 7 == 0 else 0,
            promotions=[PROMOTION] if n % 7 == 0 else [],
        )
        for n in range(payments)
    ]
    made = PaymentIntent.objects.bulk_create(rows, batch_size=2_000)
    with connection.cursor() as cursor:  # one set-based statement: a year of history, newest payment last
        cursor.execute(
            "UPDATE payments_paymentintent SET created_at = %s - (%s - id) * interval '50 minutes'"
            " WHERE cardholder_id = %s",
            [timezone.now(), made[-1].pk, holder.pk],
        )
    refunded = made[::REFUND_EVERY]
    created = dict(PaymentIntent.objects.filter(pk__in=[p.pk for p in refunded]).values_list("pk", "created_at"))
    Refund.objects.bulk_create(
        [
            Refund(
                intent=p,
                intent_created_at=created[p.pk],
                merchant_id=p.merchant_id,
                amount=300,
                status=Refund.Status.SUCCEEDED,
                reference=f"bulk-{p.public_id}",
            )
            for p in refunded
        ],
        batch_size=2_000,
    )
    PaymentIntent.objects.filter(pk__in=[p.pk for p in refunded]).update(
        amount_refund_reserved=300, amount_refunded=300
    )
    for payment in made[-20:]:
        program = programs[own.index(next(c for c in own if c.pk == payment.card_id))]
        ledger.points_earn(
            cardholder_id=holder.pk, program=program, amount=payment.points_earned,
            idempotency_key=f"payment:{payment.public_id}:earn", source=ledger.EarnSource.PAYMENT,
            metadata={"payment": payment.public_id},
        )  # fmt: skip
    client = Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    newest = made[-1]
    return {
        "client": client, "holder": holder, "cards": own, "programs": programs, "newest": newest,
        "refunded": refunded[-1], "merchant": merchants[0],
    }  # fmt: skip


def count(action: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as queries:
        action()
    return len(queries)


def get(client: Client, url: str, params: dict[str, str] | None = None, *, status: int = 200) -> Any:
    response = client.get(url, params or {})
    assert response.status_code == status, url
    if response.streaming:
        b"".join(response.streaming_content)  # the rows are read while streaming: counted here
    return response


def measure(world: dict[str, Any]) -> dict[str, int]:
    client, newest = world["client"], world["newest"]
    statement = reverse("payments:statement")
    month = timezone.localtime(newest.created_at, SHANGHAI).strftime("%Y-%m")
    filtered = {
        "bank": str(world["cards"][0].bank_id), "month": month, "category": "dining",
        "q": world["merchant"].display_name[:6],
    }  # fmt: skip
    first = get(client, statement)
    following = first.context["page"].next_after
    return {
        "statement": count(lambda: get(client, statement)),
        "statement_filtered": count(lambda: get(client, statement, filtered)),
        "statement_next": count(lambda: get(client, statement, {"after": following} if following else {})),
        "statement_csv": count(lambda: get(client, reverse("payments:statement_csv"))),
        "statement_csv_filtered": count(lambda: get(client, reverse("payments:statement_csv"), filtered)),
        "payment": count(lambda: get(client, reverse("payments:statement_payment", args=[newest.public_id]))),
        "refunded_payment": count(
            lambda: get(client, reverse("payments:statement_payment", args=[world["refunded"].public_id]))
        ),
        "dashboard": count(lambda: get(client, reverse("members:dashboard"))),
        "points": count(lambda: get(client, reverse("rewards_portal:points"))),
        "points_statement": count(
            lambda: get(client, reverse("rewards_portal:statement", args=[world["programs"][0].pk]))
        ),
    }


# What each page may cost, sign-in (session, user) and the cardholder included.
PINNED = {
    # The newest archived month of payments, read on every page: the last one says where the statement stops.
    "statement": 8,
    "statement_filtered": 8,
    "statement_next": 8,
    # The CSV's rows are read in a transaction of their own (a server-side cursor; docs/scaling.md, "PgBouncer"):
    # inside the test's transaction, its SAVEPOINT and RELEASE are two of these.
    "statement_csv": 8,
    "statement_csv_filtered": 8,
    "payment": 9,  # its points movements read the archived months of entries first
    "refunded_payment": 9,
    "dashboard": 7,  # the page, and one query for each of the points and spending tiles
    "points": 6,
    "points_statement": 8,  # the archived months of entries, read before the page
}


def test_ten_cards_and_ten_thousand_payments_cost_no_more_queries_than_one_of_each() -> None:
    small = seed_holder(cards=1, payments=1)
    big = seed_holder(cards=10, payments=10_000)
    assert PaymentIntent.objects.filter(cardholder=big["holder"]).count() == 10_000
    assert big["newest"].created_at > timezone.now() - dt.timedelta(days=1)
    small_counts, big_counts = measure(small), measure(big)
    assert big_counts == small_counts
    assert big_counts == PINNED
