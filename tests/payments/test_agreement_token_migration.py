"""payments 0021/0022: existing agreements keep working by their token, which is no longer stored."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.exceptions import IrreversibleError
from django.db.migrations.executor import MigrationExecutor

from core.crypto import keyed_hash
from tests.factories import CardFactory, MerchantFactory

BEFORE = [("payments", "0020_orphan_sweep_permissions")]
AFTER = [("payments", "0022_agreement_token_drop_plaintext")]
TOKENS = ["agt_firstTokenAbc123xyz0001", "agt_secondTokenDef456uvw0002"]


@pytest.mark.django_db(transaction=True)
def test_existing_agreements_are_hashed_and_their_plaintext_dropped() -> None:
    card = CardFactory()
    merchant = MerchantFactory(sponsor_bank=card.bank)
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps.get_model("payments", "Agreement").objects
        for token in TOKENS:
            old.create(
                token=token,
                cardholder_id=card.cardholder_id,
                merchant_id=merchant.pk,
                card_id=card.pk,
                limit_per_payment=1_000,
                limit_per_month=10_000,
            )
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps.get_model("payments", "Agreement").objects
        assert sorted(new.values_list("token_hash", "token_hint")) == sorted(
            (keyed_hash(token, purpose="agreement-token"), f"agt_…{token[-4:]}") for token in TOKENS
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT t::text FROM payments_agreement t")
            rows = " ".join(row[0] for row in cursor.fetchall())
        assert not [token for token in TOKENS if token in rows]
        with pytest.raises(IrreversibleError):  # the plaintext cannot come back while agreements exist
            MigrationExecutor(connection).migrate(BEFORE)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM payments_agreement")
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
