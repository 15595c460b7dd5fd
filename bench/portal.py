"""Portal benchmark: the cardholder's pages with a long history.

Seeds a cardholder with 10 cards at 10 banks (each with its points programme) and 10,000 captured payments over the
last year at 20 merchants (every 7th with a promotion, every 20th partly refunded, the newest 20 with their points
earned through the ledger), beside a crowd of 200,000 other payments, all by `INSERT … SELECT` (bench/common.py
`insert_columns`). Then, through the Django test client in one process, each page `--requests` times after a warm-up:
the dashboard, the statement's first page, a filtered page (bank, month, category), a deep page (the 200th, by its
cursor), a payment's detail, the points page and a programme's statement; and the full CSV export (10,500 lines) a few
times. It checks every page's status and content (the newest line first, the filters honoured, the CSV's line count)
and that each page costs the same queries as for a cardholder with one card and one payment.

    .venv/bin/python bench/portal.py [--requests 200] [--others 200000] [--redis URL|none] [--database NAME] [--keep]

Last line:
BENCH portal dashboard_p95_ms=... statement_p95_ms=... best_card_ms=... max_queries=... statement_first_p95_ms=...
statement_filtered_p95_ms=... statement_deep_p95_ms=... payment_p95_ms=... points_p95_ms=... csv_ms=... redis=...
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from common import add_arguments, insert_columns, ms, percentile, setup

CARDS = 10
PAYMENTS = 10_000
MERCHANTS = 20
REFUND_EVERY = 20
PROMOTION_EVERY = 7
CATEGORIES = ("dining", "online", "travel", "groceries", "fuel")
WARM_UP = 5


def seed(others: int) -> dict[str, Any]:
    from django.db import connection, transaction
    from django.utils import timezone

    from members.models import Card, CardProduct, MemberBank, PointsProgram
    from members.services import cardholder_register
    from merchants.models import Merchant
    from payments.models import PaymentIntent, Refund
    from rewards import services as ledger

    now = timezone.now()
    with transaction.atomic():
        banks = [
            MemberBank.objects.create(
                code=f"BP{n:02d}", name_zh=f"门户基准银行{n}", name_en=f"Portal bench bank {n}", kind="joint_stock",
                issuing_licence=True, acquiring_licence=True, joined_on=dt.date(2025, 1, 1),
            )
            for n in range(CARDS)
        ]  # fmt: skip
        programs = [
            PointsProgram.objects.create(
                bank=bank,
                unit_code=f"BP{n:02d}PTS",
                name=f"积分{n}",
                name_en=f"Points {n}",
                point_value_cny=Decimal("0.005"),
            )
            for n, bank in enumerate(banks)
        ]
        holders = [
            cardholder_register(username=username, display_name=username, phone=f"1390000{n:04d}", password="x")
            for n, username in enumerate(("portal-bench", "portal-bench-one", "portal-bench-crowd"))
        ]
        cards = []
        for n, bank in enumerate([*banks, banks[0], banks[1]]):  # 10 for the bench, 1 for the small, 1 for the crowd
            holder = holders[0] if n < CARDS else holders[n - CARDS + 1]
            product = CardProduct.objects.create(bank=bank, code=f"PB{n}", name=f"卡{n}", name_en=f"Card {n}")
            cards.append(
                Card.objects.create(
                    cardholder=holder, bank=bank, product=product, token=f"card_portal_bench_{n}", bin="62260000",
                    last4=f"{n:04d}", fingerprint=f"fp-portal-{n:054d}", expiry_month=12, expiry_year=2099,
                    status="active",
                )
            )  # fmt: skip
        merchants = Merchant.objects.bulk_create(
            Merchant(
                code=f"PB{n:05d}", legal_name=f"Portal bench merchant {n}", display_name=f"Merchant {n}",
                sponsor_bank=banks[n % CARDS], spend_category=CATEGORIES[n % len(CATEGORIES)],
            )
            for n in range(MERCHANTS)
        )  # fmt: skip
    promotion = '[{"promotion": "promo_bench", "name": "¥5 off", "kind": "amount_off", "discount": 500, "points": 0}]'
    payment_columns, payment_values = insert_columns(
        PaymentIntent,
        {
            "public_id": "'pay_portal' || lpad(g::text, 14, '0')",
            "merchant_id": "(%(merchants)s::bigint[])[1 + g %% %(n_merchants)s]",
            "cardholder_id": "holder",
            "card_id": "card",
            "issuer_id": "issuer",
            "method": "'card'",
            "currency": "'CNY'",
            "amount": "1000 + g %% 50000",
            "amount_captured": "1000 + g %% 50000",
            "status": "'succeeded'",
            "spend_category": f"(ARRAY{list(CATEGORIES)})[1 + (g %% %(n_merchants)s) %% {len(CATEGORIES)}]",
            "points_earned": "10 + g %% 500",
            "discount_amount": f"CASE WHEN g %% {PROMOTION_EVERY} = 0 THEN 500 ELSE 0 END",
            "promotions": f"CASE WHEN g %% {PROMOTION_EVERY} = 0 THEN %(promotion)s::jsonb ELSE '[]'::jsonb END",
            "livemode": "true",
            "captured_at": "at",
            "created_at": "at",
            "updated_at": "at",
        },
    )
    params = {
        "merchants": [m.pk for m in merchants],
        "n_merchants": len(merchants),
        "cards": [c.pk for c in cards[:CARDS]],
        "issuers": [c.bank_id for c in cards[:CARDS]],
        "holder": holders[0].pk,
        "crowd": holders[2].pk,
        "crowd_card": cards[-1].pk,
        "crowd_issuer": cards[-1].bank_id,
        "payments": PAYMENTS,
        "others": others,
        "now": now,
        "promotion": promotion,
    }
    with connection.cursor() as cursor:
        # The bench cardholder's year: payment g on card g mod 10, one every 52 minutes back from now, interleaved
        # with the crowd's (another cardholder's), so the table is not in the bench cardholder's order.
        for holder, card, issuer, count, offset in (
            ("%(holder)s", "(%(cards)s::bigint[])[1 + g %% 10]", "(%(issuers)s::bigint[])[1 + g %% 10]",
             "%(payments)s", 0),
            ("%(crowd)s", "%(crowd_card)s", "%(crowd_issuer)s", "%(others)s", PAYMENTS),
        ):  # fmt: skip
            cursor.execute(
                f"""
                INSERT INTO payments_paymentintent ({payment_columns})
                SELECT {payment_values}
                FROM generate_series({offset} + 1, {offset} + {count}::bigint) g
                CROSS JOIN LATERAL (
                  SELECT {holder} AS holder, {card} AS card, {issuer} AS issuer,
                         %(now)s::timestamptz - ({offset} + {count} - g) * interval '52 minutes'
                         + (g %% 7) * interval '1 second' AS at
                ) shape
                """,
                params,
            )
        refund_columns, refund_values = insert_columns(
            Refund,
            {
                "public_id": "'re_portal' || p.id",
                "intent_id": "p.id",
                "intent_created_at": "p.created_at",
                "merchant_id": "p.merchant_id",
                "amount": "300",
                "status": "'succeeded'",
                "reference": "'re-portal-' || p.id",
                "points_reversed": "1",
                "created_at": "p.created_at + interval '2 days'",
                "completed_at": "p.created_at + interval '2 days'",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO payments_refund ({refund_columns})
            SELECT {refund_values} FROM payments_paymentintent p
            WHERE p.cardholder_id IN (%(holder)s, %(crowd)s) AND p.id %% {REFUND_EVERY} = 0
            """,
            params,
        )
        cursor.execute(
            f"""
            UPDATE payments_paymentintent SET amount_refund_reserved = 300, amount_refunded = 300, points_reversed = 1
            WHERE cardholder_id IN (%(holder)s, %(crowd)s) AND id %% {REFUND_EVERY} = 0
            """,
            params,
        )
    small_payment = PaymentIntent.objects.create(
        merchant=merchants[0], cardholder=holders[1], card=cards[CARDS], issuer_id=cards[CARDS].bank_id,
        amount=1_000, amount_captured=1_000, status="succeeded", spend_category=merchants[0].spend_category,
    )  # fmt: skip
    by_bank = {program.bank_id: program for program in programs}
    newest = list(PaymentIntent.objects.filter(cardholder=holders[0]).order_by("-created_at", "-id")[:20])
    for payment in [*newest, small_payment]:
        ledger.points_earn(
            cardholder_id=payment.cardholder_id, program=by_bank[payment.issuer_id], amount=payment.points_earned or 10,
            idempotency_key=f"payment:{payment.public_id}:earn", source=ledger.EarnSource.PAYMENT,
            metadata={"payment": payment.public_id},
        )  # fmt: skip
    return {"holders": holders, "cards": cards, "programs": programs, "newest": newest[0], "small": small_payment}


def timed(client: Any, url: str, check: Callable[[Any], None], requests: int) -> list[float]:
    for _ in range(WARM_UP):
        check(read(client, url))
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        response = read(client, url)
        latencies.append(time.perf_counter() - started)
        check(response)
    return latencies


def read(client: Any, url: str) -> Any:
    response = client.get(url)
    if response.streaming:
        response.body = b"".join(response.streaming_content)
    return response


def queries(client: Any, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert read(client, url).status_code == 200, url
    return len(captured)


def best_card_ms(client: Any, requests: int) -> float:
    """Best card's p95: the page filled from the cardholder's own year of payments (the consented import, which reads
    the 10,000 payments and values every product and pair), as a cardholder asks for it."""
    from django.urls import reverse

    from alliance.forms import IMPORT

    url = reverse("alliance_portal:best_card")
    latencies = []
    for n in range(requests + 5):
        started = time.perf_counter()
        response = client.post(url, {"action": IMPORT, "use_history": "on"})
        if n >= 5:  # warm-up
            latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
        assert 'id="ranking"' in response.content.decode()
    return percentile(latencies, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--others", type=int, default=200_000, help="other cardholders' payments in the table")
    args = parser.parse_args()
    run = setup("portal", args)

    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from core.calendar import SHANGHAI
    from payments.cardholder_statement import PAGE_SIZE, Cursor, StatementFilters, statement_page

    started = time.perf_counter()
    world = seed(args.others)
    print(f"bench: seeded {PAYMENTS} + {args.others} payments in {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    holder, small = world["holders"][0], world["holders"][1]
    newest, program = world["newest"], world["programs"][0]
    client, small_client = Client(HTTP_HOST="localhost"), Client(HTTP_HOST="localhost")
    client.force_login(holder.user)
    small_client.force_login(small.user)

    statement = reverse("payments:statement")
    month = timezone.localtime(newest.created_at, SHANGHAI).strftime("%Y-%m")
    card = world["cards"][0]
    filters = StatementFilters(bank_id=card.bank_id, month=dt.date.fromisoformat(f"{month}-01"), category="dining")
    filtered = f"{statement}?bank={card.bank_id}&month={month}&category=dining"
    expected = statement_page(cardholder=holder, filters=filters).lines
    assert expected, "the filtered page is empty"
    assert all(line.category == "dining" and line.bank_zh == card.bank.name_zh for line in expected)
    cursor = None
    for _ in range(199):  # the 200th page's cursor
        cursor = Cursor.parse(statement_page(cardholder=holder, filters=StatementFilters(), after=cursor).next_after)
    assert cursor is not None
    deep = f"{statement}?after={cursor.encode()}"

    def rows(response: Any) -> int:
        assert response.status_code == 200
        return response.content.decode().count("<tr class=")

    def link(payment: str) -> str:
        return reverse("payments:statement_payment", args=[payment])

    def check_first(response: Any) -> None:
        assert rows(response) == PAGE_SIZE
        assert link(newest.public_id) in response.content.decode()

    def check_filtered(response: Any) -> None:
        assert rows(response) == len(expected)
        assert link(expected[0].payment) in response.content.decode()

    def check_deep(response: Any) -> None:
        assert rows(response) == PAGE_SIZE

    def ok(response: Any) -> None:
        assert response.status_code == 200

    pages = {
        "dashboard": (reverse("members:dashboard"), ok),
        "statement_first": (statement, check_first),
        "statement_filtered": (filtered, check_filtered),
        "statement_deep": (deep, check_deep),
        "payment": (reverse("payments:statement_payment", args=[newest.public_id]), ok),
        "points": (reverse("rewards_portal:points"), ok),
        "points_statement": (reverse("rewards_portal:statement", args=[program.pk]), ok),
    }
    p95 = {}
    for name, (url, check) in pages.items():
        latencies = timed(client, url, check, args.requests)
        p95[name] = percentile(latencies, 0.95)
        print(f"bench: {name} p50 {ms(percentile(latencies, 0.5))} ms, p95 {ms(p95[name])} ms", flush=True)

    csv_url = reverse("payments:statement_csv")
    csv_times = []
    for _ in range(3):
        began = time.perf_counter()
        body = read(client, csv_url).body.decode()
        csv_times.append(time.perf_counter() - began)
    csv_rows = list(csv.reader(io.StringIO(body)))
    refunds = PAYMENTS // REFUND_EVERY
    assert len(csv_rows) == 1 + PAYMENTS + refunds, len(csv_rows)

    # The same pages for a cardholder with one card and one payment: not one query fewer.
    small_urls = {
        **{name: url for name, (url, _check) in pages.items()},
        "statement_filtered": f"{statement}?bank={world['cards'][CARDS].bank_id}",
        "statement_deep": statement,
        "payment": reverse("payments:statement_payment", args=[world["small"].public_id]),
        "points_statement": reverse(
            "rewards_portal:statement",
            args=[next(p.pk for p in world["programs"] if p.bank_id == world["cards"][CARDS].bank_id)],
        ),
        "statement_csv": csv_url,
    }
    big_counts = {name: queries(client, url) for name, (url, _check) in pages.items()}
    big_counts["statement_csv"] = queries(client, csv_url)
    small_counts = {name: queries(small_client, url) for name, url in small_urls.items()}
    for name, count in big_counts.items():
        assert count <= small_counts[name], f"{name}: {count} queries for 10,000 payments, {small_counts[name]} for one"
    print(f"bench: queries per page {big_counts}", flush=True)

    statement_p95 = max(p95["statement_first"], p95["statement_filtered"])
    print(
        f"BENCH portal dashboard_p95_ms={ms(p95['dashboard'])} statement_p95_ms={ms(statement_p95)} "
        f"best_card_ms={ms(best_card_ms(client, 20))} max_queries={max(big_counts.values())} "
        f"statement_first_p95_ms={ms(p95['statement_first'])} "
        f"statement_filtered_p95_ms={ms(p95['statement_filtered'])} "
        f"statement_deep_p95_ms={ms(p95['statement_deep'])} payment_p95_ms={ms(p95['payment'])} "
        f"points_p95_ms={ms(p95['points'])} points_statement_p95_ms={ms(p95['points_statement'])} "
        f"csv_ms={ms(min(csv_times))} redis={run.redis}"
    )


if __name__ == "__main__":
    main()
