"""Clearing and revenue-share benchmark (PostgreSQL).

The settlement benchmark's 1,000,000 captured payments (fee splits, refunds, promotion uses), spread over the days of
their month, and a ledger of inter-bank obligations over `--days` days ending on the settlement benchmark's day,
`--obligations` a day: merchant-funded earns (merchant → issuer), exchanges (paying bank → receiving bank and the
alliance's fee), cross-bank redemptions (issuer → benefit provider, each with its voucher) and partial reversals of
earns, each a ledger transaction with its points and CNY entries. Then, timed:

- `clearing_s`: `alliance.services.clearing_run` nets the settlement day's obligations (CNY);
- `revshare_s`: `alliance.services.revenue_share_run` allocates the month, once every day of obligations has been
  cleared (untimed), as the daily clearing has by the 3rd;
- `floor_s`: one `GROUP BY` of the same day's obligations per bank into a bare table (run first, so that the
  clearing after it does not find the pages cold).

Every net position is checked against a direct sum, the positions and the shares against their totals, and every
revenue-share metric (and the exchange fees) against its definition's own statement.

    .venv/bin/python bench/clearing.py [--payments N] [--merchants N] [--obligations N] [--days N] [--database NAME]
        [--keep]

Prints `BENCH clearing ...` last.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from common import add_arguments, insert_columns, setup
from settlement import DAY
from settlement import seed as seed_payments

MONTH = DAY[:7]


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, redis=False)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=1_000)
    parser.add_argument("--obligations", type=int, default=100_000, help="ledger transactions with obligations a day")
    parser.add_argument("--days", type=int, default=10, help="days of obligations, ending on the cleared day")
    args = parser.parse_args()
    setup("clearing", args, redis="never")

    from django.db import connection

    from alliance import services

    started = time.perf_counter()
    seed_payments(args.payments, args.merchants)
    spread_over_month()
    seed_obligations(args.obligations, args.days)
    seed_terms()
    print(f"bench: seeded in {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")

    day = dt.date.fromisoformat(DAY)
    floor_s = floor(day)  # first: the clearing that follows is not the one to find the pages cold
    started = time.perf_counter()
    run = services.clearing_run(day, "CNY")
    clearing_s = time.perf_counter() - started
    positions = check_clearing(run, day)
    print(f"bench: cleared {DAY} in {clearing_s:.2f} s: {positions} positions", flush=True)

    # By the 3rd, when the month is shared, the daily job has cleared each of its days: the others, untimed.
    for back in range(1, args.days):
        services.clearing_run(day - dt.timedelta(days=back), "CNY")

    started = time.perf_counter()
    share = services.revenue_share_run(MONTH)
    revshare_s = time.perf_counter() - started
    banks = check_revenue_share(share)
    print(f"bench: shared {MONTH} in {revshare_s:.2f} s among {banks} banks", flush=True)
    print(
        f"BENCH clearing clearing_s={clearing_s:.2f} revshare_s={revshare_s:.2f} floor_s={floor_s:.2f}"
        f" vs_floor={floor_s / clearing_s:.2f} obligations_per_day={args.obligations} days={args.days}"
        f" payments={args.payments} positions={positions} banks={banks}"
    )


def spread_over_month() -> None:
    """The settlement benchmark puts its payments on one day; a month's run wants them over the month's days."""
    from django.db import connection, transaction

    from payments.models import FeeSplit, PaymentIntent, Refund

    payment, refund, fee = (model._meta.db_table for model in (PaymentIntent, Refund, FeeSplit))
    first = dt.date.fromisoformat(MONTH + "-01")
    days = (dt.date.fromisoformat(DAY) - first).days + 1
    # One transaction: a refund and its fee splits move to their payment's new time together, and the fee splits'
    # key to the refund, (refund_id, payment_created_at), is checked at the commit.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {payment} SET business_date = business_date - (id %% %(days)s)::int,
                       captured_at = captured_at - (id %% %(days)s) * interval '1 day',
                       authorized_at = authorized_at - (id %% %(days)s) * interval '1 day',
                       created_at = created_at - (id %% %(days)s) * interval '1 day'""",
            {"days": days},
        )
        cursor.execute(
            f"""UPDATE {refund} r SET business_date = p.business_date, intent_created_at = p.created_at,
                       created_at = p.captured_at + interval '1 hour', completed_at = p.captured_at + interval '1 hour'
                FROM {payment} p WHERE p.id = r.intent_id"""
        )
        cursor.execute(
            f"""UPDATE {fee} f SET created_at = CASE WHEN f.event = 'capture' THEN p.captured_at ELSE f.created_at END,
                       payment_created_at = p.created_at
                FROM {payment} p WHERE p.id = f.payment_id"""
        )


def seed_obligations(per_day: int, days: int) -> None:
    """`per_day` ledger transactions a day over `days` days ending on DAY, with their entries, set-based (balances
    are not kept: clearing reads entries). Transaction
    g is, by g mod 20: 0–7 a merchant-funded earn, 8–14 an exchange, 15–18 a cross-bank redemption (with a voucher of
    the provider's benefit), 19 a partial reversal of the earn before it."""
    from django.db import connection, transaction
    from django.utils import timezone

    from members.models import Card, MemberBank, PointsProgram
    from merchants.models import Merchant
    from rewards.models import Account, Benefit, Entry, LedgerTransaction, Voucher
    from rewards.services.accounts import spread_for

    banks = list(MemberBank.objects.order_by("code"))
    cards = list(Card.objects.order_by("id"))
    merchants = list(Merchant.objects.order_by("id").values_list("id", "sponsor_bank_id"))
    now = timezone.now()
    with transaction.atomic():
        programs = [
            PointsProgram.objects.create(
                bank=bank, name=f"{bank.code} points", unit_code=f"PT_{bank.code}", point_value_cny="0.005"
            )
            for bank in banks
        ]  # fmt: skip
        clearing = {
            ("bank", bank.pk): Account(
                owner_kind="bank", owner_id=bank.pk, purpose="clearing", unit="CNY", bank=bank, may_go_negative=True
            )
            for bank in banks
        }
        clearing.update(
            {
                ("merchant", merchant): Account(
                    owner_kind="merchant",
                    owner_id=merchant,
                    purpose="clearing",
                    unit="CNY",
                    bank_id=sponsor,
                    may_go_negative=True,
                )
                for merchant, sponsor in merchants
            }
        )
        clearing[("alliance", 0)] = Account(
            owner_kind="alliance", owner_id=0, purpose="fees", unit="CNY", may_go_negative=True
        )
        Account.objects.bulk_create(clearing.values())
        issuance = Account.objects.bulk_create(
            Account(
                owner_kind="bank",
                owner_id=program.bank_id,
                purpose="issuance",
                unit=program.unit_code,
                program=program,
                bank_id=program.bank_id,
                may_go_negative=True,
            )
            for program in programs
        )
        wallets = Account.objects.bulk_create(  # one wallet per programme: the points side is not what is measured
            Account(
                owner_kind="cardholder",
                owner_id=cards[0].cardholder_id,
                spread=spread_for("cardholder", cards[0].cardholder_id, 0),
                purpose="points",
                unit=program.unit_code,
                program=program,
                bank_id=program.bank_id,
                may_go_negative=True,
            )
            for program in programs
        )
        benefits = [
            Benefit.objects.create(
                bank=bank, kind="lounge", title_zh=f"{bank.code}贵宾厅", title_en=f"{bank.code} lounge",
                pricing="cny", price_cny_units=500_000, cost_units=400_000,
                valid_from=now - dt.timedelta(days=400), valid_until=now + dt.timedelta(days=400), status="published",
            )
            for bank in banks
        ]  # fmt: skip

    t = {model.__name__: model._meta.db_table for model in (LedgerTransaction, Entry, Voucher)}
    bank_ids = [bank.pk for bank in banks]
    params: dict[str, Any] = {
        "per_day": per_day,
        "total": per_day * days,
        "first": (dt.date.fromisoformat(DAY) - dt.timedelta(days=days - 1)).isoformat(),
        "banks": bank_ids,
        "n_banks": len(bank_ids),
        "bank_clearing": [clearing[("bank", bank)].pk for bank in bank_ids],
        "merchant_clearing": [clearing[("merchant", merchant)].pk for merchant, _ in merchants],
        "n_merchants": len(merchants),
        "merchants": [merchant for merchant, _ in merchants],
        "fees": clearing[("alliance", 0)].pk,
        "issuance": [account.pk for account in issuance],
        "wallets": [wallet.pk for wallet in wallets],
        "wallet_spread": wallets[0].spread,  # one cardholder's wallets; every other account here has spread 0
        "units": [program.unit_code for program in programs],
        "benefits": [benefit.pk for benefit in benefits],
        "cards": [card.pk for card in cards],
        "holders": [card.cardholder_id for card in cards],
        "card_banks": [card.bank_id for card in cards],
        "n_cards": len(cards),
    }
    # Shape of transaction g: kind, payer and payee (1-based positions in the arrays above), CNY units, points.
    shape = """
        CROSS JOIN LATERAL (SELECT g %% 20 AS r, 1 + g %% %(n_banks)s AS a,
                                   1 + (g + 1 + g / 7 %% 3) %% %(n_banks)s AS b,
                                   1 + g %% %(n_merchants)s AS m, 1 + g %% %(n_cards)s AS c,
                                   100 + (g * 7919) %% 200000 AS units,
                                   %(first)s::date + (g / %(per_day)s)::int AS day) s
    """
    txn_columns, txn_values = insert_columns(
        LedgerTransaction,
        {
            "kind": """CASE WHEN s.r < 8 THEN 'earn' WHEN s.r < 15 THEN 'exchange' WHEN s.r < 19 THEN 'spend'
                            ELSE 'reversal' END""",
            "idempotency_key": "'bench-clr-' || g",
            "request_hash": "md5(g::text)",
            "points": "s.units / 50",
            "metadata": """CASE WHEN s.r < 8 THEN jsonb_build_object('source', 'promotion', 'funded_by',
                                      jsonb_build_array('merchant', (%(merchants)s::bigint[])[s.m]),
                                      'funded_units', s.units)
                            WHEN s.r < 15 THEN jsonb_build_object('fee_rate', '0.02')
                            WHEN s.r < 19 THEN jsonb_build_object('pays_to',
                                      jsonb_build_array('bank', (%(banks)s::bigint[])[s.b]), 'funded_units', s.units)
                            ELSE '{}'::jsonb END""",
            "entry_count": "CASE WHEN s.r BETWEEN 8 AND 14 THEN 5 ELSE 4 END",  # below: an exchange's fee is a fifth
            "created_at": "(s.day + time '00:00') AT TIME ZONE 'Asia/Shanghai' + (g %% 86000) * interval '1 second'",
        },
    )
    # The CNY entries of g (payer −, payee +; an exchange's fee of 2 % to the alliance) and two points entries.
    entries = """
        SELECT x.id, e.account, e.spread, e.unit, e.amount, 0, x.created_at
        FROM txn x CROSS JOIN LATERAL (SELECT substring(x.idempotency_key FROM 11)::bigint AS g) k
        {shape}
        CROSS JOIN LATERAL (SELECT CASE WHEN s.r = 19 THEN s.units / 2 ELSE s.units END AS v,
                                   CASE WHEN s.r BETWEEN 8 AND 14 THEN s.units / 50 ELSE 0 END AS fee) s2
        CROSS JOIN LATERAL (VALUES
          (CASE WHEN s.r < 8 THEN (%(merchant_clearing)s::bigint[])[s.m]
                ELSE (%(bank_clearing)s::bigint[])[s.a] END, 0, 'CNY', -s2.v),
          (CASE WHEN s.r < 8 THEN (%(bank_clearing)s::bigint[])[s.a]
                WHEN s.r < 19 THEN (%(bank_clearing)s::bigint[])[s.b]
                ELSE (%(merchant_clearing)s::bigint[])[s.m] END, 0, 'CNY', s2.v - s2.fee),
          (CASE WHEN s2.fee > 0 THEN %(fees)s END, 0, 'CNY', s2.fee),
          ((%(issuance)s::bigint[])[s.a], 0, (%(units)s::text[])[s.a], -(s.units / 50 + 1)),
          ((%(wallets)s::bigint[])[s.a], %(wallet_spread)s, (%(units)s::text[])[s.a], s.units / 50 + 1)
        ) e (account, spread, unit, amount)
        WHERE e.account IS NOT NULL AND e.amount <> 0
    """.replace("{shape}", shape)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH txn AS (
              INSERT INTO {t["LedgerTransaction"]} ({txn_columns})
              SELECT {txn_values} FROM generate_series(0, %(total)s::bigint - 1) g {shape}
              RETURNING id, idempotency_key, created_at
            )
            INSERT INTO {t["Entry"]} (transaction_id, account_id, spread, unit, amount, balance_after, created_at)
            {entries}
            """,
            params,
        )
        voucher_columns, voucher_values = insert_columns(
            Voucher,
            {
                "benefit_id": "(%(benefits)s::bigint[])[s.b]",
                "cardholder_id": "(%(holders)s::bigint[])[s.c]",
                "card_id": "(%(cards)s::bigint[])[s.c]",
                "code_hash": "md5('v' || g) || md5('w' || g)",
                "code_encrypted": "'x'",
                "code_hint": "'0000'",
                "state": "CASE WHEN g %% 3 = 0 THEN 'issued' ELSE 'redeemed' END",
                "idempotency_key": "'bench-voucher-' || g",
                "request_hash": "md5(g::text)",
                "cost_units": "400000",
                "month": f"'{MONTH}'",
                "issued_at": "(s.day + time '12:00') AT TIME ZONE 'Asia/Shanghai'",
                "expires_at": "(s.day + time '12:00') AT TIME ZONE 'Asia/Shanghai' + interval '30 days'",
                "redeemed_at": """CASE WHEN g %% 3 = 0 THEN NULL
                                  ELSE (s.day + time '13:00') AT TIME ZONE 'Asia/Shanghai' END""",
            },
        )
        cursor.execute(
            f"""
            INSERT INTO {t["Voucher"]} ({voucher_columns})
            SELECT {voucher_values} FROM generate_series(0, %(total)s::bigint - 1) g {shape}
            WHERE s.r BETWEEN 15 AND 18
            """,
            params,
        )


def seed_terms() -> None:
    """The revenue share's terms through its services, four eyes: a policy weighing every metric, each bank's
    membership fee, and the month's running costs."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from alliance import services
    from alliance.models import METRICS, AllianceCost, MembershipFee, RevenueSharePolicy
    from core.approvals import approval_approve
    from core.scoping import ALLIANCE_OPERATORS
    from members.models import MemberBank

    maker, checker = (get_user_model().objects.create(username=name, is_staff=True) for name in ("maker", "checker"))
    for user in (maker, checker):
        user.groups.add(Group.objects.get(name=ALLIANCE_OPERATORS))
    weights = dict(zip(METRICS, ("0.2", "0.2", "0.2", "0.1", "0.1", "0.2"), strict=True))
    month = dt.date.fromisoformat(MONTH + "-01")
    policy = services.policy_save(
        policy_id=None, weights=weights, cost_weights=weights, effective_from=month, actor=maker
    )
    request = services.terms_submit(model=RevenueSharePolicy, version_id=policy.pk, actor=maker, reason="bench")
    approval_approve(request_id=request.pk, checker=checker)
    for bank in MemberBank.objects.all():
        fee = services.membership_fee_save(
            fee_id=None, bank_id=bank.pk, amount=5_000_000, effective_from=month, actor=maker
        )
        request = services.terms_submit(model=MembershipFee, version_id=fee.pk, actor=maker, reason="bench")
        approval_approve(request_id=request.pk, checker=checker)
    AllianceCost.objects.create(month=month, amount=12_345_678, description="bench: running costs")


def check_clearing(run: Any, day: dt.date) -> int:
    """Each position's net (ten-thousandths) against a direct sum of the day's entries on its accounts (a merchant's
    counted for its sponsor); the rounded nets sum to zero."""
    from django.db import connection

    from alliance.models import ClearingPosition

    positions = list(ClearingPosition.objects.filter(run=run))
    assert positions, "no positions"
    assert sum(p.net_minor for p in positions) == 0
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT COALESCE(a.bank_id, 0), sum(e.amount)
            FROM rewards_entry e
            JOIN rewards_ledgertransaction x ON x.id = e.transaction_id
            JOIN rewards_account a ON a.id = e.account_id AND a.spread = e.spread
            WHERE x.created_at >= %s AND x.created_at < %s AND a.purpose IN ('clearing', 'fees') AND a.unit = 'CNY'
            GROUP BY 1
            """,
            [start, start + dt.timedelta(days=1)],
        )
        direct = dict(cursor.fetchall())
    assert sum(direct.values()) == 0
    got = {p.bank_id or 0: p.net for p in positions}
    assert got == {k: v for k, v in direct.items() if v or k in got}, (got, direct)
    return len(positions)


def check_revenue_share(run: Any) -> int:
    """The shares against the pool and the costs; every metric and the exchange fees, as the run read them (from one
    read of the payments and from the clearing runs), against their definitions' statements over the ledger."""
    from alliance import metrics
    from alliance.models import METRICS, RevenueShareStatement

    statements = list(RevenueShareStatement.objects.filter(run=run))
    assert statements, "no statements"
    assert sum(s.amount for s in statements) == run.pool > 0
    assert sum(s.cost for s in statements) == run.costs > 0
    assert all(s.net == s.amount - s.cost for s in statements)
    defined = metrics.metric_values_by_definition(run.month)
    for metric in METRICS:
        assert {s.bank_id: getattr(s, metric) for s in statements if getattr(s, metric)} == defined[metric], metric
    assert defined["points_exchanged_in"], "no exchanges"
    assert run.exchange_fee_units == _exchange_fees(run.month)
    return len(statements)


def _exchange_fees(month: dt.date) -> int:
    from django.db import connection

    from alliance import metrics

    with connection.cursor() as cursor:
        cursor.execute(metrics.EXCHANGE_FEES_SQL, metrics.MonthRange(month).params())
        return int(cursor.fetchone()[0])


def floor(day: dt.date) -> float:
    """The least any clearing can do: one GROUP BY of the day's CNY obligation entries per bank into a bare table."""
    from django.db import connection

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE floor_positions (bank_id bigint, amount numeric)")
        started = time.perf_counter()
        cursor.execute(
            """
            INSERT INTO floor_positions
            SELECT a.bank_id, sum(e.amount)
            FROM rewards_entry e
            JOIN rewards_ledgertransaction x ON x.id = e.transaction_id
            JOIN rewards_account a ON a.id = e.account_id AND a.spread = e.spread
            WHERE x.created_at >= %s AND x.created_at < %s AND a.purpose IN ('clearing', 'fees') AND e.unit = 'CNY'
            GROUP BY a.bank_id
            """,
            [start, start + dt.timedelta(days=1)],
        )
        return time.perf_counter() - started


if __name__ == "__main__":
    main()
