"""Benefits benchmark (PostgreSQL): redemptions per second from 8 processes against one popular benefit with ample
stock, through `rewards.services.benefit_redeem`, side by side with a floor that does the same inserts and guarded
updates in raw SQL. Seeds its own rows, asserts its own side effects and prints `BENCH benefits ...` last.

    .venv/bin/python bench/benefits.py --seconds 10 [--redis URL|none] [--database NAME] [--keep]

Its database and Redis db are its own (bench/common.py).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import add_arguments, describe, run_workers, setup

WORKERS = 8
HOLDERS = 200  # 25 per worker: the wallets are each worker's own, the benefit's row is everyone's
PRICE = 100
SEED_POINTS = 10_000_000
STOCK = 10_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    run = setup("benefits", args)

    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from members.models import Card, Cardholder, CardProduct, MemberBank, PointsProgram
    from rewards import services as s
    from rewards.models import (
        Account,
        Benefit,
        BenefitQuotaUse,
        Entry,
        LedgerKey,
        LedgerTransaction,
        Lot,
        LotMovement,
        Voucher,
        VoucherPayment,
    )

    bank = MemberBank.objects.create(
        code="BBEN",
        name_zh="基准银行",
        name_en="Bench bank",
        kind="joint_stock",
        issuing_licence=True,
        joined_on=dt.date(2025, 1, 1),
    )
    program = PointsProgram.objects.create(bank=bank, unit_code="BBEN-PTS", name="pts", point_value_cny="0.005")
    product = CardProduct.objects.create(bank=bank, code="GOLD", name="Gold", kind="credit", earning_rates={})
    user_model = get_user_model()
    cards = []
    for index in range(HOLDERS):
        holder = Cardholder.objects.create(
            user=user_model.objects.create(username=f"bench{index}"),
            display_name=f"Bench {index}",
            phone_encrypted="x",
            phone_hash=f"{index:064d}",
            phone_last4="0000",
        )
        cards.append(
            Card.objects.create(
                cardholder=holder,
                bank=bank,
                product=product,
                token=f"card_bench_{index}",
                bin="62260000",
                last4=f"{index:04d}",
                fingerprint=f"fp{index:062d}",
                expiry_month=12,
                expiry_year=2099,
                status="active",
            )
        )
        s.points_earn(cardholder_id=holder.pk, program=program, amount=SEED_POINTS, idempotency_key=f"seed:{index}")
    s.bank_points_account(program, s.Purpose.REDEMPTION, cards[0].cardholder_id)
    now = timezone.now()

    def popular(title: str) -> Benefit:
        return Benefit.objects.create(
            bank=bank,
            kind=Benefit.Kind.LOUNGE,
            title_zh=title,
            title_en=title,
            pricing=Benefit.Pricing.POINTS,
            price_program=program,
            price_points=PRICE,
            stock_total=STOCK,
            stock_left=STOCK,
            limit_per_month=1_000_000,
            valid_from=now - dt.timedelta(days=1),
            valid_until=now + dt.timedelta(days=30),
            status=Benefit.Status.PUBLISHED,
        )

    benefit = popular("热门权益")
    pairs = [(card.cardholder_id, card.pk) for card in cards]

    # 1. through the service: 8 workers, each redeeming for its own cardholders in turn
    def redeem(index: int, go: Any) -> list[float]:
        mine = pairs[index::WORKERS]
        deadline = go()
        latencies, n = [], 0
        while time.time() < deadline:
            holder, card = mine[n % len(mine)]
            started = time.perf_counter()
            s.benefit_redeem(
                cardholder_id=holder,
                card_id=card,
                benefit_id=benefit.pk,
                points={program.pk: PRICE},
                idempotency_key=f"bench:{index}:{n}",
            )
            latencies.append(time.perf_counter() - started)
            n += 1
        return latencies

    redeemed, latencies, elapsed = run_workers(WORKERS, args.seconds, redeem)
    redeem_tps = redeemed / elapsed
    benefit.refresh_from_db()
    assert Voucher.objects.filter(benefit=benefit).count() == redeemed
    assert VoucherPayment.objects.filter(voucher__benefit=benefit).count() == redeemed
    assert (benefit.stock_left, benefit.redeemed_count) == (STOCK - redeemed, redeemed)
    assert sum(BenefitQuotaUse.objects.filter(benefit=benefit).values_list("used", flat=True)) == redeemed
    wallets = Account.objects.filter(purpose=s.Purpose.POINTS, owner_kind="cardholder")
    assert sum(wallets.values_list("posted", flat=True)) == HOLDERS * SEED_POINTS - redeemed * PRICE

    # 2. the floor: the same 8 workers by hand, in the same tables, one transaction each of the redemption's writes in
    # the service's order — the quota counter's guarded upsert, the ledger transaction, the wallet's guarded balance
    # update, the sink's, the lot's guarded update and its movement, two entries, the voucher and its payment, and last
    # the benefit's guarded stock update. Removed afterwards.
    floor = popular("基准下限")
    wallet_of = {a.owner_id: a.pk for a in wallets}
    # the bank's redemption account is sharded (as the ledger spreads its hot accounts): a shard per worker
    sinks = list(
        Account.objects.filter(purpose=s.Purpose.REDEMPTION, unit=program.unit_code)
        .order_by("shard")
        .values_list("pk", flat=True)
    )
    lot_of = {lot.account_id: lot.pk for lot in Lot.objects.filter(account_id__in=wallet_of.values())}
    month = now.strftime("%Y-%m")
    models = (
        Benefit, BenefitQuotaUse, LedgerTransaction, LedgerKey, Account, Lot, LotMovement, Entry, Voucher,
        VoucherPayment,
    )  # fmt: skip
    tables = {model.__name__: model._meta.db_table for model in models}

    def raw(index: int, go: Any) -> list[float]:
        import psycopg2

        params = connection.get_connection_params()
        conn = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
        cursor = conn.cursor()
        mine = pairs[index::WORKERS]
        sink = sinks[index % len(sinks)]
        deadline = go()
        latencies, n = [], 0
        t = tables
        while time.time() < deadline:
            holder, card = mine[n % len(mine)]
            wallet, key = wallet_of[holder], f"floor:{index}:{n}"
            started = time.perf_counter()
            cursor.execute(
                f"INSERT INTO {t['BenefitQuotaUse']} (benefit_id, kind, owner_id, period, used)"
                " VALUES (%s, 'month', %s, %s, 1) ON CONFLICT (benefit_id, kind, owner_id, period)"
                f" DO UPDATE SET used = {t['BenefitQuotaUse']}.used + 1 WHERE {t['BenefitQuotaUse']}.used < %s"
                " RETURNING used",
                (floor.pk, holder, month, 1_000_000),
            )
            assert cursor.fetchone() is not None
            cursor.execute(
                f"INSERT INTO {t['LedgerTransaction']} (kind, idempotency_key, request_hash, points, reversed_points,"
                " metadata, actor_label, seal_digest, entry_count, created_at)"
                " VALUES ('redeem', %s, '-', %s, 0, '{}', 'system', '', 2, now()) RETURNING id, created_at",
                (key, PRICE),
            )
            (txn, txn_at) = cursor.fetchone()
            cursor.execute(
                f"INSERT INTO {t['LedgerKey']} (idempotency_key, transaction_id, transaction_created_at)"
                " VALUES (%s, %s, %s)",
                (key, txn, txn_at),
            )
            cursor.execute(
                f"UPDATE {t['Account']} SET posted = posted - %s WHERE id = %s AND posted - held >= %s"
                " RETURNING posted",
                (PRICE, wallet, PRICE),
            )
            (wallet_after,) = cursor.fetchone()
            cursor.execute(
                f"UPDATE {t['Account']} SET posted = posted + %s WHERE id = %s RETURNING posted", (PRICE, sink)
            )
            (sink_after,) = cursor.fetchone()
            cursor.execute(
                f"UPDATE {t['Lot']} SET remaining = remaining - %s WHERE id = %s AND remaining >= %s",
                (PRICE, lot_of[wallet], PRICE),
            )
            assert cursor.rowcount == 1
            cursor.execute(
                f"INSERT INTO {t['LotMovement']} (transaction_id, transaction_created_at, lot_id, amount)"
                " VALUES (%s, %s, %s, %s)",
                (txn, txn_at, lot_of[wallet], -PRICE),
            )
            cursor.execute(
                f"INSERT INTO {t['Entry']}"
                " (transaction_id, account_id, spread, unit, amount, balance_after, created_at)"
                f" SELECT e.txn, e.account, a.spread, e.unit, e.amount, e.after, now() FROM {t['Account']} a"
                " JOIN (VALUES (%s::bigint, %s::bigint, %s, %s::bigint, %s::bigint), (%s, %s, %s, %s, %s))"
                " AS e (txn, account, unit, amount, after) ON a.id = e.account",
                (txn, wallet, program.unit_code, -PRICE, wallet_after, txn, sink, program.unit_code, PRICE, sink_after),
            )
            cursor.execute(
                f"INSERT INTO {t['Voucher']} (benefit_id, cardholder_id, card_id, code_hash, code_encrypted, code_hint,"
                " state, idempotency_key, request_hash, points, cost_units, month, issued_at, expires_at)"
                " VALUES (%s, %s, %s, %s, '-', '0000', 'issued', %s, '-', %s, %s, %s, now(),"
                " now() + interval '30 days') RETURNING id",
                (floor.pk, holder, card, key, key, f'{{"{program.pk}": {PRICE}}}', PRICE * 50, month),
            )
            (voucher,) = cursor.fetchone()
            cursor.execute(
                f"INSERT INTO {t['VoucherPayment']} (voucher_id, program_id, points, value_units, transaction_id,"
                " transaction_created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (voucher, program.pk, PRICE, PRICE * 50, txn, txn_at),
            )
            cursor.execute(
                f"UPDATE {t['Benefit']} SET stock_left = stock_left - 1, redeemed_count = redeemed_count + 1,"
                " cost_units = cost_units + %s WHERE id = %s AND status = 'published'"
                " AND (stock_left IS NULL OR stock_left > 0)",
                (PRICE * 50, floor.pk),
            )
            assert cursor.rowcount == 1
            conn.commit()
            latencies.append(time.perf_counter() - started)
            n += 1
        conn.close()
        return latencies

    floored, _, floor_elapsed = run_workers(WORKERS, args.seconds, raw)
    floor_tps = floored / floor_elapsed
    floor.refresh_from_db()
    assert Voucher.objects.filter(benefit=floor).count() == floored
    assert floor.stock_left == STOCK - floored
    floor_txns = LedgerTransaction.objects.filter(idempotency_key__startswith="floor:")
    assert Entry.objects.filter(transaction__in=floor_txns).count() == 2 * floored
    VoucherPayment.objects.filter(voucher__benefit=floor).delete()
    Voucher.objects.filter(benefit=floor).delete()
    Entry.objects.filter(transaction__in=floor_txns).delete()
    LotMovement.objects.filter(transaction__in=floor_txns).delete()
    floor_txns.delete()
    BenefitQuotaUse.objects.filter(benefit=floor).delete()
    floor.delete()

    stats = describe(latencies)
    print(
        f"BENCH benefits redeem_tps={redeem_tps:.0f} p50_ms={stats['p50_ms']} p99_ms={stats['p99_ms']}"
        f" floor_tps={floor_tps:.0f} vs_floor={redeem_tps / floor_tps:.2f} redeemed={redeemed} redis={run.redis}"
    )


if __name__ == "__main__":
    main()
