"""Routing decisions are partitioned by month on their payment's created_at (payments/migrations/0050, docs/scaling.md
"Partitioning by month"): a decision lands in its payment's month, its key to the payment names that month, and the
daily job archives a month of decisions (nothing refers to one) while the payments' month stays.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from core.models import ArchivedMonth
from core.partitions import PARTITIONED, partitions, partitions_create, partitions_maintain
from payments.models import PaymentIntent, RoutingDecision
from tests.partitioning import assert_monthly, at, fetch, partition_of, payment_at, table_keys

pytestmark = pytest.mark.django_db

TABLE = "payments_routingdecision"


def _decided(payment: PaymentIntent) -> RoutingDecision:
    return RoutingDecision.objects.create(
        intent=payment, intent_created_at=payment.created_at, strategy="cheapest", chosen=["SIM"]
    )


def test_the_migration_made_a_partitioned_table_whose_key_holds_the_payments_time() -> None:
    assert_monthly(TABLE, "intent_created_at")
    assert {key for key in table_keys(TABLE) if key.startswith("PRIMARY")} == {"PRIMARY KEY (id, intent_created_at)"}
    assert fetch(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'payments_routingdecision_payment_fk'"
        " AND conparentid = 0"
    ) == [
        (
            "FOREIGN KEY (intent_id, intent_created_at) REFERENCES payments_paymentintent(id, created_at)"
            " ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED",
        )
    ]
    # A month of decisions is detached before its payments' month (a referring table comes first).
    tables = list(PARTITIONED)
    assert tables.index(TABLE) < tables.index("payments_paymentintent")


def test_a_decision_lands_in_its_payments_month_and_a_read_naming_it_touches_that_month_only() -> None:
    partitions_create(TABLE, dt.date(2023, 1, 1), 3)
    partitions_create("payments_paymentintent", dt.date(2023, 1, 1), 3)
    payment = payment_at(at(2023, 2, 28, 23))
    decision = _decided(payment)
    assert partition_of(TABLE, decision.pk) == f"{TABLE}_p202302"
    assert partition_of(TABLE, _decided(payment_at(at(2023, 9))).pk) == f"{TABLE}_default"

    plan = RoutingDecision.objects.filter(intent=payment, intent_created_at=payment.created_at).explain()
    assert f"{TABLE}_p202302" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p202302"]
    assert not [name for name in others if name in plan], plan


def test_the_job_archives_a_month_of_decisions_and_keeps_the_payments_month() -> None:
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2024, 1, 1), 1)
    partitions_create("payments_paymentintent", dt.date(2024, 1, 1), 1)
    payment = payment_at(at(2024, 1))
    decision = _decided(payment)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    result = partitions_maintain(today=dt.date(2024, 6, 10), ahead=0, archive_after=3)

    assert f"{TABLE}_archive_202401" in result.archived
    assert ArchivedMonth.objects.filter(table=TABLE, month=dt.date(2024, 1, 1)).exists()
    assert not RoutingDecision.objects.filter(pk=decision.pk).exists()
    assert fetch(f"SELECT id, intent_id FROM {TABLE}_archive_202401") == [(decision.pk, payment.pk)]
    # Payments are never archived (tables that are not partitioned refer to every month of theirs).
    assert not [name for name in result.archived if name.startswith("payments_paymentintent")]
    assert PaymentIntent.objects.filter(pk=payment.pk).exists()
