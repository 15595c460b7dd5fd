"""rewards 0024: existing ledger transactions take their entry count from their entries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import LedgerTransaction
from tests.factories import CardholderFactory, PointsProgramFactory

BEFORE = [("rewards", "0023_ledger_transactions_partitioned")]
AFTER = [("rewards", "0024_ledger_transaction_entry_count")]


@pytest.mark.django_db(transaction=True)
def test_existing_transactions_take_the_count_of_their_entries() -> None:
    a, b, holder = PointsProgramFactory(), PointsProgramFactory(), CardholderFactory()
    earn = s.points_earn(cardholder_id=holder.pk, program=a, amount=100, idempotency_key="e")
    bulk = s.points_earn_bulk(
        events=[s.EarnEvent(holder.pk, a.pk, 5), s.EarnEvent(holder.pk, b.pk, 7), s.EarnEvent(holder.pk, a.pk, 9)],
        idempotency_key="bulk",
    )
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        with connection.cursor() as cursor:  # a transaction without entries, written before the column, with its key
            cursor.execute(
                "INSERT INTO rewards_ledgertransaction"
                " (kind, idempotency_key, request_hash, points, reversed_points, metadata, actor_label, created_at)"
                " VALUES ('adjust', 'empty', '-', 0, 0, '{}', 'system', now()) RETURNING id"
            )
            (empty,) = cursor.fetchone()
            cursor.execute(
                "INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)"
                " SELECT idempotency_key, id, created_at FROM rewards_ledgertransaction WHERE id = %s",
                [empty],
            )
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        counts = dict(LedgerTransaction.objects.values_list("pk", "entry_count"))
        assert counts == {earn.pk: 2, bulk.pk: 5, empty: 0}  # the bulk earn: three wallet entries, two issuances
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())  # the check reads today's columns (the entries' spread)
        assert ledger_verify(seals=False).violations == []
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
