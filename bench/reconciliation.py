"""Reconciliation benchmark (PostgreSQL): a channel's statement of 500,000 rows for one business date, against
485,000 captured payments and 10,000 refunds of ours, with 1 % of each class of discrepancy injected — 5,000 rows left
out (missing at the channel), 5,000 the channel has and we do not (`x-<n>`), 5,000 with another amount, 5,000 failed,
5,000 listed twice — and 1,000 rows without any reference (matched by amount and time). Timed: the import (parse, COPY
into the staging table) and the match through `payments.services.statement_import`; every class count asserted
exactly, in the summary and in the exceptions queue. Prints `BENCH reconciliation ...` last.

    .venv/bin/python bench/reconciliation.py [--rows N] [--format csv_v1|csv_v2|fixed_v1] [--database NAME] [--keep]

The payments are seeded with set-based SQL (generate_series), then vacuumed, analysed and checkpointed. Its database
is its own (bench/common.py); it uses no Redis.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from typing import Any

from common import add_arguments, insert_columns, setup

DAY = dt.date(2026, 11, 24)  # a Tuesday
CLASSES = ("missing_at_channel", "amount_mismatch", "status_mismatch", "duplicate")  # by row index mod 99
ANONYMOUS = 1_000


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, redis=False)
    parser.add_argument("--rows", type=int, default=500_000, help="statement rows (a multiple of 100)")
    parser.add_argument("--format", default="csv_v1", choices=["csv_v1", "csv_v2", "fixed_v1"])
    args = parser.parse_args()
    if args.rows % 100 or args.rows < 10_000:
        parser.error("--rows is a multiple of 100, at least 10,000")
    setup("reconciliation", args, redis="never")

    from django.db import connection

    from payments import services, statements

    ours = args.rows // 100 * 99  # our rows: the statement drops 1 %, adds 1 % extra and 1 % duplicates
    refunds = ours // 50
    started = time.perf_counter()
    channel = seed(ours - refunds, refunds)
    print(f"bench: seeded {ours - refunds} payments, {refunds} refunds in {time.perf_counter() - started:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")

    started = time.perf_counter()
    text, expected = statement(channel, ours, args.rows // 100)
    print(f"bench: wrote the {args.format} statement in {time.perf_counter() - started:.1f} s", flush=True)
    rendered = statements.render(args.format, channel.code, DAY, text)
    assert len(text) == args.rows, (len(text), args.rows)

    started = time.perf_counter()
    result = services.statement_import(channel=channel, day=DAY, text=rendered, fmt=args.format)
    recon_s = time.perf_counter() - started
    counts = {name: entry["count"] for name, entry in result.summary.items()}
    print(f"bench: imported and matched in {recon_s:.2f} s: {json.dumps(counts)}", flush=True)
    assert result.statement.rows == args.rows, result.statement.rows
    check(result, counts, expected)
    print(
        f"BENCH reconciliation recon_s={recon_s:.2f} rows_per_s={args.rows / recon_s:.0f} rows={args.rows}"
        f" format={args.format} matched={counts['matched']} exceptions={sum(expected.values()) - expected['matched']}"
        " redis=none"
    )


def check(result: Any, counts: dict[str, int], expected: dict[str, int]) -> None:
    from django.db.models import Count

    from payments.models import ReconciliationException

    assert counts == expected, (counts, expected)
    queue = dict(ReconciliationException.objects.values("kind").annotate(n=Count("id")).values_list("kind", "n"))
    assert queue == {name: n for name, n in expected.items() if name != "matched" and n}, queue
    held = ReconciliationException.objects.filter(holds_settlement=True).count()
    assert held == expected["missing_at_channel"] + expected["amount_mismatch"] + expected["status_mismatch"], held


def seed(payments: int, refunds: int) -> Any:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from members.models import Card, Cardholder, CardProduct, MemberBank
    from merchants.models import Merchant
    from payments.models import Channel, PaymentAttempt, PaymentIntent, Refund

    with transaction.atomic():
        bank = MemberBank.objects.create(
            code="RB01",
            name_zh="对账基准银行",
            name_en="Reconciliation bench bank",
            kind="joint_stock",
            issuing_licence=True,
            acquiring_licence=True,
            joined_on=dt.date(2025, 1, 1),
        )
        channel = Channel.objects.create(
            code="bench-recon", name="Bench acquirer", acquirer=bank, connector="inprocess", cutoff=dt.time(23)
        )
        holder = Cardholder.objects.create(
            user=get_user_model().objects.create(username="recon-bench"),
            display_name="Bench",
            phone_encrypted="x",
            phone_hash="0" * 64,
            phone_last4="0000",
        )
        product = CardProduct.objects.create(bank=bank, code="RC", name="Card", kind="credit", earning_rates={})
        card = Card.objects.create(
            cardholder=holder,
            bank=bank,
            product=product,
            token="card_recon_bench",
            bin="62260000",
            last4="0000",
            fingerprint="f" * 64,
            expiry_month=12,
            expiry_year=2099,
            status="active",
        )
        merchant = Merchant.objects.create(
            code="RBM01",
            legal_name="Reconciliation bench merchant",
            display_name="Merchant",
            sponsor_bank=bank,
            spend_category="dining",
        )
    params = {
        "payments": payments,
        "refunds": refunds,
        "merchant": merchant.pk,
        "holder": holder.pk,
        "card": card.pk,
        "channel": channel.pk,
        "bank": bank.pk,
        "start": dt.datetime.combine(DAY, dt.time(0, 30), tzinfo=dt.timezone(dt.timedelta(hours=8))),
    }
    payment_columns, payment_values = insert_columns(
        PaymentIntent,
        {
            "public_id": "'pay_rbench' || lpad(g::text, 12, '0')",
            "merchant_id": "%(merchant)s",
            "cardholder_id": "%(holder)s",
            "card_id": "%(card)s",
            "currency": "'CNY'",
            "amount": "100 + g",  # unique amounts: a row without a reference has one match
            "amount_captured": "100 + g",
            "status": "'succeeded'",
            "channel_id": "%(channel)s",
            "acquirer_id": "%(bank)s",
            "issuer_id": "%(bank)s",
            "business_date": f"'{DAY.isoformat()}'::date",
            "authorized_at": "at",
            "captured_at": "at",
            "livemode": "true",
            "created_at": "at",
            "updated_at": "at",
        },
    )
    attempt_columns, attempt_values = insert_columns(
        PaymentAttempt,
        {
            "intent_id": "p.id",
            "sequence": "1",
            "channel_id": "%(channel)s",
            "reference": "p.public_id || '-1'",
            "intent_created_at": "p.created_at",
            "status": "'captured'",
            "amount": "p.amount",
            "currency": "'CNY'",
            "channel_reference": "'txn_' || p.public_id",
            "created_at": "p.captured_at",
            "resolved_at": "p.captured_at",
        },
    )
    refund_columns, refund_values = insert_columns(
        Refund,
        {
            "public_id": "'re_rbench' || lpad(p.id::text, 12, '0')",
            "intent_id": "p.id",
            "intent_created_at": "p.created_at",
            "merchant_id": "p.merchant_id",
            "amount": "50",
            "status": "'succeeded'",
            "reference": "p.public_id || '-r1'",
            "channel_reference": "'txn_re_' || p.public_id",
            "business_date": f"'{DAY.isoformat()}'::date",
            "created_at": "p.captured_at + interval '2 hours'",
            "completed_at": "p.captured_at + interval '2 hours'",
        },
    )
    t = {model.__name__: model._meta.db_table for model in (PaymentIntent, PaymentAttempt, Refund)}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {t["PaymentIntent"]} ({payment_columns})
            SELECT {payment_values}
            FROM generate_series(1, %(payments)s::bigint) g
            CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + g * interval '100 milliseconds' AS at) shape
            """,
            params,
        )
        cursor.execute(
            f"INSERT INTO {t['PaymentAttempt']} ({attempt_columns}) SELECT {attempt_values}"
            f" FROM {t['PaymentIntent']} p",
            params,
        )
        cursor.execute(
            f"""
            UPDATE {t["PaymentIntent"]} SET amount_refunded = 50, amount_refund_reserved = 50
            WHERE id IN (SELECT id FROM {t["PaymentIntent"]} ORDER BY id LIMIT %(refunds)s)
            """,
            params,
        )
        cursor.execute(
            f"INSERT INTO {t['Refund']} ({refund_columns}) SELECT {refund_values} FROM {t['PaymentIntent']} p"
            " ORDER BY p.id LIMIT %(refunds)s",
            params,
        )
    return channel


def statement(channel: Any, ours: int, per_class: int) -> tuple[list[Any], dict[str, int]]:
    """The statement's rows from ours, with each class injected on fixed rows (index mod 99), and the expected
    summary."""
    from django.db import connection

    from payments.models import PaymentAttempt, PaymentIntent, Refund
    from payments.statements import Row

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT 'capture', a.reference, a.channel_reference, p.amount_captured, p.captured_at
            FROM {PaymentIntent._meta.db_table} p JOIN {PaymentAttempt._meta.db_table} a ON a.intent_id = p.id
            UNION ALL
            SELECT 'refund', r.reference, r.channel_reference, -r.amount, r.completed_at
            FROM {Refund._meta.db_table} r
            """
        )
        mine = cursor.fetchall()
    assert len(mine) == ours, (len(mine), ours)
    rows: list[Any] = []
    anonymous = 0
    for index, (kind, reference, txn, amount, at) in enumerate(mine):
        row = Row(kind, reference, txn, "", "CNY", amount, 0, "success", at)
        fault = index % 99
        if fault == 0:
            continue  # missing at the channel
        if fault == 1:
            row = row._replace(amount=amount + (3 if amount > 0 else -3))
        elif fault == 2:
            row = row._replace(status="failed")
        elif fault == 3:
            rows.append(row)  # and once more below: a duplicate
        elif fault == 4 and kind == "capture" and anonymous < ANONYMOUS:
            anonymous += 1
            row = row._replace(reference="", channel_txn_id="")
        rows.append(row)
    noon = dt.datetime.combine(DAY, dt.time(20), tzinfo=dt.timezone(dt.timedelta(hours=8)))
    rows += [
        Row("capture", f"x-{n}", f"sim-x-{n}", "", "CNY", 7 + n, 0, "success", noon + dt.timedelta(seconds=n))
        for n in range(1, per_class + 1)
    ]
    expected = {
        "matched": ours - 3 * per_class,
        "missing_at_channel": per_class,
        "missing_with_us": per_class,
        "dispute_missing": 0,
        "amount_mismatch": per_class,
        "status_mismatch": per_class,
        "duplicate": per_class,
    }
    return rows, expected


if __name__ == "__main__":
    main()
