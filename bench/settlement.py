"""Settlement benchmark (PostgreSQL): one business day of 1,000,000 captured payments (5 % partly refunded, fee
splits, promotion costs on some) across 1,000 T+1 merchants, settled by `payments.services.settle`, every total
asserted against a direct SQL sum; side by side, the floor: one `INSERT … SELECT … GROUP BY` of the same sums into a
bare table. Prints `BENCH settlement ...` last.

    .venv/bin/python bench/settlement.py [--payments N] [--merchants N] [--chunk-merchants N] [--workers N]
        [--database NAME] [--keep] [--again]

`--again --database NAME` settles once more the day that a run with `--keep` seeded in NAME (with the same
`--payments` and `--merchants`): its batches, lines, instructions and payouts are removed first, so a change to the
settlement can be measured without seeding the day again (ten million payments take many minutes to seed).

The rows are seeded with set-based SQL (generate_series; the payments and their fee splits a million at a time);
their foreign keys are checked once at the end, by one anti-join per key, as a restore checks them; then they are
vacuumed, analysed and checkpointed, as autovacuum and the checkpointer would have done by 02:00 the next morning.
The run's user needs the rights to set `session_replication_role` and to CHECKPOINT (the default server's superuser
has both). Its database is its own (bench/common.py); it uses no Redis.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from common import add_arguments, insert_columns, setup

DAY = "2026-11-24"  # a Tuesday: settled on Wednesday the 25th
ACQUIRERS = 5
ISSUERS = 5
REFUND_EVERY = 20  # 5 %
SLICE = 1_000_000  # payments seeded a statement
PROMOTION_EVERY = 25  # 4 % of payments carry a points promotion, half of those a co-funded discount too


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, redis=False)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=1_000)
    parser.add_argument("--chunk-merchants", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--again", action="store_true", help="settle again the day a kept run seeded in --database (see above)"
    )
    args = parser.parse_args()
    if args.again and not args.database:
        parser.error("--again needs --database: the database a run with --keep seeded")
    run = setup("settlement", args, redis="never", reuse=args.again)

    from django.conf import settings
    from django.db import connection

    from payments import services

    started = time.perf_counter()
    if args.again:
        tables = unsettle(args.payments, args.merchants)
        print(f"bench: the kept day's settlement removed in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        tables = seed(args.payments, args.merchants)
        print(f"bench: seeded {args.payments} payments in {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # outside a transaction: Django runs in autocommit
        # The seeding's writes flushed now, not by a checkpoint in the middle of the measured run.
        cursor.execute("CHECKPOINT")

    started = time.perf_counter()
    report = services.settle("t1", DAY, chunk_merchants=args.chunk_merchants, workers=args.workers)
    settle_s = time.perf_counter() - started
    print(
        f"bench: settled in {settle_s:.2f} s: {report.merchants} merchants, {report.chunks} chunks of"
        f" {args.chunk_merchants or settings.SETTLEMENT_CHUNK_MERCHANTS}, {report.batches} batches,"
        f" {report.lines} lines",
        flush=True,
    )
    check(tables, args.payments, args.merchants, report)

    floor_s = floor(tables)
    print(
        f"BENCH settlement settle_s={settle_s:.2f} floor_s={floor_s:.2f} lines_per_s={report.lines / settle_s:.0f}"
        f" vs_floor={floor_s / settle_s:.2f} payments={args.payments} merchants={args.merchants}"
        f" lines={report.lines} chunks={report.chunks} workers={args.workers or settings.SETTLEMENT_WORKERS}"
        f" redis={run.redis}"
    )


def _tables() -> dict[str, str]:
    from merchants.models import Merchant
    from payments.models import (
        FeeSplit,
        PaymentIntent,
        Payout,
        Refund,
        SettlementBatch,
        SettlementLine,
        SplitInstruction,
    )
    from rewards.models import Promotion, PromotionUse

    models: dict[str, Any] = {
        "payment": PaymentIntent,
        "refund": Refund,
        "fee": FeeSplit,
        "batch": SettlementBatch,
        "line": SettlementLine,
        "split": SplitInstruction,
        "payout": Payout,
        "merchant": Merchant,
        "use": PromotionUse,
        "promotion": Promotion,
    }
    return {name: model._meta.db_table for name, model in models.items()}


def unsettle(payments: int, merchants: int) -> dict[str, str]:
    """The kept day as it was seeded: its settlement removed (batches, lines, instructions, payouts, job runs), after
    checking that it holds the payments and merchants the run was told."""
    from django.db import connection

    from core.models import JobRun

    t = _tables()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT count(*) FROM {t['payment']} WHERE business_date = %s), (SELECT count(*) FROM"
            f" {t['merchant']} WHERE settlement_cycle = 't1')",
            [DAY],
        )
        found = cursor.fetchone()
        if found != (payments, merchants):
            raise SystemExit(
                f"bench/settlement: --again: the database holds {found[0]} payments of {DAY} and {found[1]} T+1"
                f" merchants, not {payments} and {merchants}: give the sizes it was seeded with"
            )
        cursor.execute(f"TRUNCATE {t['line']}, {t['split']}, {t['payout']}, {t['batch']} CASCADE")  # bench rows only
        cursor.execute(f"DELETE FROM {JobRun._meta.db_table} WHERE job LIKE 'settle%%'")
    return t


def seed(payments: int, merchants: int) -> dict[str, str]:
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from core.partitions import PARTITIONED, month_start, partitions_create
    from members.models import Card, Cardholder, CardProduct, MemberBank
    from merchants.models import Merchant
    from payments.models import Channel, FeeSchedule, PaymentIntent, Refund
    from rewards.models import Promotion, PromotionUse

    tables = _tables()
    now = timezone.now()
    # The day's month has its partitions, as the daily job makes them months ahead: the day's rows are not read out
    # of the DEFAULT partition.
    for table in PARTITIONED:
        partitions_create(table, month_start(dt.date.fromisoformat(DAY)), 1)
    with transaction.atomic():
        banks = [
            MemberBank.objects.create(
                code=f"BS{n:02d}",
                name_zh=f"结算基准银行{n}",
                name_en=f"Settlement bench bank {n}",
                kind="joint_stock",
                issuing_licence=True,
                acquiring_licence=True,
                joined_on=dt.date(2025, 1, 1),
            )
            for n in range(ACQUIRERS + ISSUERS)
        ]
        acquirers, issuers = banks[:ACQUIRERS], banks[ACQUIRERS:]
        channels = [
            Channel.objects.create(code=f"bench-acq-{n}", name=f"Acquirer {n}", acquirer=bank, connector="inprocess")
            for n, bank in enumerate(acquirers)
        ]
        user_model = get_user_model()
        cards = []
        for n, bank in enumerate(issuers):
            holder = Cardholder.objects.create(
                user=user_model.objects.create(username=f"settle-bench-{n}"),
                display_name=f"Bench {n}",
                phone_encrypted="x",
                phone_hash=f"{n:064d}",
                phone_last4="0000",
            )
            product = CardProduct.objects.create(bank=bank, code=f"C{n}", name="Card", kind="credit", earning_rates={})
            cards.append(
                Card.objects.create(
                    cardholder=holder,
                    bank=bank,
                    product=product,
                    token=f"card_settle_bench_{n}",
                    bin="62260000",
                    last4="0000",
                    fingerprint=f"fp{n:062d}",
                    expiry_month=12,
                    expiry_year=2099,
                    status="active",
                )
            )
        grades = ["low"] * 6 + ["medium"] * 3 + ["high"]
        merchant_rows = Merchant.objects.bulk_create(
            Merchant(
                code=f"SB{n:05d}",
                legal_name=f"Settlement bench merchant {n}",
                display_name=f"Merchant {n}",
                sponsor_bank=acquirers[n % ACQUIRERS],
                spend_category="dining",
                risk_grade=grades[n % len(grades)],
                payouts_frozen=n % 50 == 7,
                frozen_reason="bench: frozen" if n % 50 == 7 else "",
            )
            for n in range(merchants)
        )
        schedule = FeeSchedule.objects.create(
            mdr_percent=Decimal("0.6"),
            issuer_share=Decimal("60"),
            acquirer_share=Decimal("25"),
            channel_share=Decimal("10"),
            alliance_share=Decimal("5"),
            effective_from=now - dt.timedelta(days=400),
        )
        promotion_rows = Promotion.objects.bulk_create(
            Promotion(
                merchant=merchant,
                name=f"{kind} {merchant.code}",
                kind=kind,
                multiplier=Decimal("2") if kind == Promotion.Kind.POINTS_MULTIPLIER else None,
                amount_off=500 if kind == Promotion.Kind.AMOUNT_OFF else None,
                cofunder=issuers[0] if kind == Promotion.Kind.AMOUNT_OFF else None,
                cofunder_share=Decimal("0.3") if kind == Promotion.Kind.AMOUNT_OFF else None,
                cofunding=Promotion.Cofunding.APPROVED if kind == Promotion.Kind.AMOUNT_OFF else "",
                budget=10**12,
                starts_at=now - dt.timedelta(days=30),
                ends_at=now + dt.timedelta(days=30),
            )
            for merchant in merchant_rows
            for kind in (Promotion.Kind.POINTS_MULTIPLIER, Promotion.Kind.AMOUNT_OFF)
        )

    merchant_ids = [merchant.pk for merchant in merchant_rows]
    points_promotions = [p.pk for p in promotion_rows if p.kind == Promotion.Kind.POINTS_MULTIPLIER]
    discount_promotions = [p.pk for p in promotion_rows if p.kind == Promotion.Kind.AMOUNT_OFF]
    params = {
        "merchants": merchant_ids,
        "n_merchants": len(merchant_ids),
        "channels": [c.pk for c in channels],
        "acquirers": [c.acquirer_id for c in channels],
        "issuers": [card.bank_id for card in cards],
        "cards": [card.pk for card in cards],
        "holders": [card.cardholder_id for card in cards],
        "points_promotions": points_promotions,
        "discount_promotions": discount_promotions,
        "payments": payments,
        "day": DAY,
        "schedule": schedule.pk,
    }
    t = tables
    # A payment g: merchant g mod M, channel (acquirer) by merchant, card (issuer) g mod 5, captured during the day.
    payment_columns, payment_values = insert_columns(
        PaymentIntent,
        {
            "public_id": "'pay_bench' || lpad(g::text, 16, '0')",
            "merchant_id": "(%(merchants)s::bigint[])[1 + g %% %(n_merchants)s]",
            "cardholder_id": "(%(holders)s::bigint[])[1 + g %% 5]",
            "card_id": "(%(cards)s::bigint[])[1 + g %% 5]",
            "method": "'card'",
            "currency": "'CNY'",
            "amount": "amount",
            "amount_captured": "amount",
            "status": "'succeeded'",
            "capture_method": "'automatic'",
            "channel_id": f"(%(channels)s::bigint[])[1 + (g %% %(n_merchants)s) %% {ACQUIRERS}]",
            "acquirer_id": f"(%(acquirers)s::bigint[])[1 + (g %% %(n_merchants)s) %% {ACQUIRERS}]",
            "issuer_id": "(%(issuers)s::bigint[])[1 + g %% 5]",
            "business_date": "%(day)s::date",
            "authorized_at": "captured",
            "captured_at": "captured",
            "fee": "round(amount * 0.6)::bigint",
            "promotions": f"""CASE WHEN g %% {PROMOTION_EVERY} = 0 THEN '[{{"promotion": "bench"}}]'::jsonb
                              ELSE '[]'::jsonb END""",
            "livemode": "true",
            "created_at": "captured",
            "updated_at": "captured",
        },
    )
    with connection.cursor() as cursor:
        # The foreign keys are checked as a restore checks them: not row by row while the rows go in (each fee split's
        # check probes the partitioned payments, and at 10,000,000 payments that was most of an hour), but once every
        # row is in, by one anti-join per key (`_check_keys`). Their triggers are the only ones these tables have.
        cursor.execute("SET session_replication_role = replica")
        for first in range(1, payments + 1, SLICE):
            cursor.execute(f"SELECT COALESCE(max(id), 0) FROM {t['payment']}")
            after = cursor.fetchone()[0]
            cursor.execute(
                f"""
                INSERT INTO {t["payment"]} ({payment_columns})
                SELECT {payment_values}
                FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
                CROSS JOIN LATERAL (
                  SELECT 100 + (g * 7919) %% 50000 AS amount,
                         (%(day)s::date + time '00:30') AT TIME ZONE 'Asia/Shanghai'
                         + (g %% 80000) * interval '1 second' AS captured
                ) shape
                """,
                {**params, "first": first, "last": min(payments, first + SLICE - 1)},
            )
            # The fee's split: 60 / 25 / 10 / 5 of it, the alliance taking what the floors leave.
            cursor.execute(
                f"""
                INSERT INTO {t["fee"]} (payment_id, payment_created_at, refund_id, schedule_id, event, party, bank_id,
                                        amount, created_at)
                SELECT p.id, p.created_at, NULL, %(schedule)s, 'capture', part.party, part.bank_id, part.amount,
                       p.captured_at
                FROM {t["payment"]} p
                CROSS JOIN LATERAL (VALUES
                  ('issuer', p.issuer_id, p.fee * 60 / 100),
                  ('acquirer', p.acquirer_id, p.fee * 25 / 100),
                  ('channel', p.acquirer_id, p.fee * 10 / 100),
                  ('alliance', NULL, p.fee - p.fee * 60 / 100 - p.fee * 25 / 100 - p.fee * 10 / 100)
                ) part (party, bank_id, amount)
                WHERE p.id > %(after)s
                """,
                {**params, "after": after},
            )
        # Promotion uses: a points multiplier on every PROMOTION_EVERY-th payment (the merchant pays 1 % of the
        # amount for its points), and on every other one of those a ¥5 discount the issuer co-funds at 30 %.
        use_columns, use_values = insert_columns(
            PromotionUse,
            {
                "promotion_id": "promotion_id",
                "cardholder_id": "p.cardholder_id",
                "payment": "p.public_id",
                "day": "%(day)s::date",
                "status": "'consumed'",
                "discount": "discount",
                "points": "points",
                "cost": "cost",
                "cofunder_cost": "cofunder_cost",
                "counted": "true",
                "created_at": "p.captured_at",
                "updated_at": "p.captured_at",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO {t["use"]} ({use_columns})
            SELECT {use_values}
            FROM {t["payment"]} p
            CROSS JOIN LATERAL (SELECT substring(p.public_id FROM 10)::bigint AS g,
                                       array_position(%(merchants)s::bigint[], p.merchant_id) AS m) k
            CROSS JOIN LATERAL (VALUES
              ((%(points_promotions)s::bigint[])[k.m], 0, p.amount_captured, p.amount_captured / 100, 0),
              (CASE WHEN k.g %% {2 * PROMOTION_EVERY} = 0 THEN (%(discount_promotions)s::bigint[])[k.m] END,
               500, 0, 500, 150)
            ) u (promotion_id, discount, points, cost, cofunder_cost)
            WHERE p.promotions <> '[]'::jsonb AND u.promotion_id IS NOT NULL
            """,
            params,
        )
        # Refunds: half of every REFUND_EVERY-th payment, later the same day; its fee handed back by the cumulative
        # rule, per party floor(part × refunded / captured); what it returned of the points promotion's cost.
        refund_columns, refund_values = insert_columns(
            Refund,
            {
                "public_id": "'re_bench' || lpad(p.id::text, 16, '0')",
                "intent_id": "p.id",
                "intent_created_at": "p.created_at",
                "merchant_id": "p.merchant_id",
                "amount": "p.amount_captured / 2",
                "status": "'succeeded'",
                "reference": "p.public_id || '-r1'",
                "promotion_cost_returned": """COALESCE((SELECT sum(u.cost * (p.amount_captured / 2) / p.amount_captured
                                                                   - u.cofunder_cost * (u.cost * (p.amount_captured / 2)
                                                                     / p.amount_captured) / u.cost)
                                                      FROM {use} u WHERE u.payment = p.public_id AND u.cost > 0
                                                        AND u.discount = 0), 0)""".replace("{use}", t["use"]),
                "business_date": "%(day)s::date",
                "created_at": "p.captured_at + interval '1 hour'",
                "completed_at": "p.captured_at + interval '1 hour'",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO {t["refund"]} ({refund_columns})
            SELECT {refund_values}
            FROM {t["payment"]} p
            WHERE substring(p.public_id FROM 10)::bigint %% {REFUND_EVERY} = 0
            """,
            params,
        )
        cursor.execute(
            f"""
            INSERT INTO {t["fee"]} (payment_id, payment_created_at, refund_id, schedule_id, event, party, bank_id,
                                    amount, created_at)
            SELECT f.payment_id, f.payment_created_at, r.id, f.schedule_id, 'refund', f.party, f.bank_id,
                   -(f.amount * r.amount / p.amount_captured), r.completed_at
            FROM {t["refund"]} r
            JOIN {t["payment"]} p ON p.id = r.intent_id
            JOIN {t["fee"]} f ON f.payment_id = p.id AND f.event = 'capture'
            """,
            params,
        )
        cursor.execute(
            f"""
            UPDATE {t["payment"]} p SET amount_refunded = r.amount, amount_refund_reserved = r.amount,
                   fee_returned = -back.amount
            FROM {t["refund"]} r
            CROSS JOIN LATERAL (SELECT sum(f.amount) AS amount FROM {t["fee"]} f WHERE f.refund_id = r.id) back
            WHERE r.intent_id = p.id
            """,
            params,
        )
        cursor.execute("RESET session_replication_role")
        _check_keys(cursor, t)
        cursor.execute(f"SELECT count(*), count(DISTINCT merchant_id) FROM {t['payment']}")
        assert cursor.fetchone() == (payments, min(payments, merchants))
    return tables


def _check_keys(cursor: Any, t: dict[str, str]) -> None:
    """Every reference the seed wrote without its foreign-key check (see `seed`) names a row that is there."""
    references = {
        "fee splits' payments": f"""{t["fee"]} f WHERE NOT EXISTS (SELECT FROM {t["payment"]} p
                                     WHERE p.id = f.payment_id AND p.created_at = f.payment_created_at)""",
        "fee splits' refunds": f"""{t["fee"]} f WHERE f.refund_id IS NOT NULL
                                    AND NOT EXISTS (SELECT FROM {t["refund"]} r
                                    WHERE r.id = f.refund_id AND r.intent_created_at = f.payment_created_at)""",
        "refunds' payments": f"""{t["refund"]} r WHERE NOT EXISTS (SELECT FROM {t["payment"]} p
                                  WHERE p.id = r.intent_id AND p.created_at = r.intent_created_at)""",
        "refunds' merchants": f"""{t["refund"]} r WHERE NOT EXISTS (SELECT FROM {t["merchant"]} m
                                   WHERE m.id = r.merchant_id)""",
        "payments' merchants": f"""{t["payment"]} p WHERE NOT EXISTS (SELECT FROM {t["merchant"]} m
                                    WHERE m.id = p.merchant_id)""",
        "promotion uses' promotions": f"""{t["use"]} u WHERE NOT EXISTS (SELECT FROM {t["promotion"]} o
                                           WHERE o.id = u.promotion_id)""",
    }
    for name, rows in references.items():
        cursor.execute(f"SELECT count(*) FROM {rows}")
        missing = cursor.fetchone()[0]
        if missing:
            raise SystemExit(f"bench/settlement: the seed wrote {missing} {name} that are not there")


def check(t: dict[str, str], payments: int, merchants: int, report: Any) -> None:
    """Every total of every batch against a direct SQL sum over the payments, refunds, fee splits and promotion uses
    of its merchant; and the formula, the reserve, the status and the instructions of each."""
    from django.db import connection

    from core.calendar import add_working_days, next_working_day
    from payments.models import ReservePolicy

    settle_on = next_working_day(dt.date.fromisoformat(DAY))
    release = {
        policy.risk_grade: (policy.percent, add_working_days(settle_on, policy.hold_working_days))
        for policy in ReservePolicy.objects.all()
    }
    with connection.cursor() as cursor:

        def one(query: str, params: Any = None) -> Any:
            cursor.execute(query, params)
            return cursor.fetchone()

        refunds = one(f"SELECT count(*) FROM {t['refund']}")[0]
        assert report.lines == payments + refunds, (report.lines, payments, refunds)
        assert one(f"SELECT count(*) FROM {t['line']}")[0] == payments + refunds
        assert one(f"SELECT count(*) FROM {t['batch']}")[0] == report.batches == merchants
        # Merchant by merchant: no batch differs from the direct sums (an EXCEPT both ways finds any).
        direct = f"""
            SELECT m.id,
                   (SELECT count(*) FROM {t["payment"]} p WHERE p.merchant_id = m.id),
                   (SELECT COALESCE(sum(amount_captured), 0) FROM {t["payment"]} p WHERE p.merchant_id = m.id),
                   (SELECT count(*) FROM {t["refund"]} r JOIN {t["payment"]} p ON p.id = r.intent_id
                    WHERE p.merchant_id = m.id),
                   (SELECT COALESCE(sum(r.amount), 0) FROM {t["refund"]} r JOIN {t["payment"]} p ON p.id = r.intent_id
                    WHERE p.merchant_id = m.id),
                   (SELECT COALESCE(sum(f.amount), 0) FROM {t["fee"]} f JOIN {t["payment"]} p ON p.id = f.payment_id
                    WHERE p.merchant_id = m.id),
                   (SELECT COALESCE(sum(u.cost - u.cofunder_cost) FILTER (WHERE pr.kind = 'points_multiplier'), 0)
                    FROM {t["use"]} u JOIN {t["promotion"]} pr ON pr.id = u.promotion_id WHERE pr.merchant_id = m.id)
                   - (SELECT COALESCE(sum(r.promotion_cost_returned), 0) FROM {t["refund"]} r
                      JOIN {t["payment"]} p ON p.id = r.intent_id WHERE p.merchant_id = m.id),
                   (SELECT COALESCE(sum(u.cofunder_cost) FILTER (WHERE pr.kind = 'amount_off'), 0)
                    FROM {t["use"]} u JOIN {t["promotion"]} pr ON pr.id = u.promotion_id WHERE pr.merchant_id = m.id)
            FROM {t["merchant"]} m
        """
        batched = f"""
            SELECT merchant_id, payments_count, gross, refunds_count, refunds, fees, promotion_charges,
                   cofunding_credits
            FROM {t["batch"]}
        """
        assert one(f"SELECT count(*) FROM (({direct}) EXCEPT ({batched})) x")[0] == 0
        assert one(f"SELECT count(*) FROM (({batched}) EXCEPT ({direct})) x")[0] == 0
        totals = one(f"SELECT sum(gross), sum(refunds), sum(fees) FROM {t['batch']}")
        assert totals == one(
            f"SELECT (SELECT sum(amount_captured) FROM {t['payment']}), (SELECT sum(amount) FROM {t['refund']}),"
            f" (SELECT sum(amount) FROM {t['fee']})"
        )
        # The fee parties against the fee splits, by party, over all batches.
        cursor.execute(f"SELECT key, sum(value::bigint) FROM {t['batch']}, jsonb_each_text(fee_parties) GROUP BY key")
        parties = dict(cursor.fetchall())
        cursor.execute(f"SELECT party, sum(amount) FROM {t['fee']} GROUP BY party")
        assert parties == dict(cursor.fetchall())
        # Each batch: the fee rounded once, the reserve by grade, the formula, the status, the instructions.
        cursor.execute(
            f"""
            SELECT b.id, b.fees, b.fee_total, b.gross, b.refunds, b.promotion_charges, b.cofunding_credits,
                   b.reserve_held, b.reserve_release_on, b.net, b.status, b.hold_reason, m.risk_grade,
                   m.payouts_frozen,
                   (SELECT COALESCE(sum(amount), 0) FROM {t["split"]} s WHERE s.batch_id = b.id AND party = 'merchant'),
                   (SELECT COALESCE(sum(amount), 0) FROM {t["split"]} s
                    WHERE s.batch_id = b.id AND party NOT IN ('merchant', 'reserve'))
            FROM {t["batch"]} b JOIN {t["merchant"]} m ON m.id = b.merchant_id
            """
        )
        from decimal import ROUND_HALF_UP, Decimal

        for row in cursor.fetchall():
            (_, fees, fee_total, gross, refunded, charges, credits, held, release_on, net, status, reason, grade,
             frozen, merchant_part, fee_part) = row  # fmt: skip
            assert fee_total == int((Decimal(fees) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            base = gross - refunded - fee_total - charges + credits
            percent, day = release[grade]
            assert held == (base * percent // 100 if base > 0 else 0)
            assert release_on == (day if held else None)
            assert net == base - held
            assert status == ("carried" if net <= 0 else "held" if frozen else "settled")
            assert (reason == "bench: frozen") == (status == "held")
            assert merchant_part == (net * 100 if status in ("settled", "held") else 0)
            assert fee_part == fees


def floor(t: dict[str, str]) -> float:
    """The same sums — payments, refunds, fees and promotion costs per merchant — in one INSERT … SELECT … GROUP BY
    into a bare table: no lines, locks, constraints or second pass."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        # A kept database may hold the table of a run that stopped before dropping it.
        cursor.execute("DROP TABLE IF EXISTS bench_settlement_floor")
        cursor.execute(
            "CREATE TABLE bench_settlement_floor (merchant_id bigint, currency varchar(3), livemode boolean,"
            " payments_count bigint, gross bigint, refunds_count bigint, refunds bigint, fees bigint,"
            " promotion_charges bigint, cofunding_credits bigint)"
        )
        started = time.perf_counter()
        with transaction.atomic():
            cursor.execute(
                f"""
                INSERT INTO bench_settlement_floor
                SELECT merchant_id, currency, livemode, count(*) FILTER (WHERE kind = 'p'),
                       COALESCE(sum(amount) FILTER (WHERE kind = 'p'), 0), count(*) FILTER (WHERE kind = 'r'),
                       COALESCE(-sum(amount) FILTER (WHERE kind = 'r'), 0), sum(fee), sum(charge), sum(credit)
                FROM (
                  SELECT 'p' AS kind, p.merchant_id, p.currency, p.livemode, p.amount_captured AS amount, p.fee,
                         COALESCE(promo.charge, 0) AS charge, COALESCE(promo.credit, 0) AS credit
                  FROM {t["payment"]} p
                  LEFT JOIN LATERAL (
                    SELECT sum(u.cost - u.cofunder_cost) FILTER (WHERE pr.kind = 'points_multiplier') AS charge,
                           sum(u.cofunder_cost) FILTER (WHERE pr.kind = 'amount_off') AS credit
                    FROM {t["use"]} u JOIN {t["promotion"]} pr ON pr.id = u.promotion_id
                    WHERE p.promotions <> '[]'::jsonb AND u.payment = p.public_id
                  ) promo ON true
                  WHERE p.business_date = %s AND p.status = 'succeeded' AND p.amount_captured > 0
                  UNION ALL
                  SELECT 'r', p.merchant_id, p.currency, p.livemode, -r.amount,
                         (SELECT sum(f.amount) FROM {t["fee"]} f WHERE f.refund_id = r.id), -r.promotion_cost_returned,
                         0
                  FROM {t["refund"]} r JOIN {t["payment"]} p ON p.id = r.intent_id
                  WHERE r.business_date = %s AND r.status = 'succeeded'
                ) items
                GROUP BY merchant_id, currency, livemode
                """,
                [DAY, DAY],
            )
        floor_s = time.perf_counter() - started
        # The floor computed the same sums as the batches: every merchant's, none left out on either side.
        cursor.execute(
            f"""SELECT merchant_id FROM (
                  (SELECT merchant_id, payments_count, gross, refunds_count, refunds, fees, promotion_charges,
                          cofunding_credits FROM bench_settlement_floor)
                  EXCEPT
                  (SELECT merchant_id, payments_count, gross, refunds_count, refunds, fees, promotion_charges,
                          cofunding_credits FROM {t["batch"]})) x ORDER BY merchant_id"""
        )
        differ = [row[0] for row in cursor.fetchall()]
        if differ:
            raise SystemExit(
                f"bench/settlement: the floor's sums differ from the batches' for {len(differ)} merchants"
                f" (the first: {differ[:5]}); bench_settlement_floor is left for a look"
            )
        cursor.execute("DROP TABLE bench_settlement_floor")
    return floor_s


if __name__ == "__main__":
    main()
