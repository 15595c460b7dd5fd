"""merchants 0010: existing events take their object's id from the payload."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("merchants", "0009_event_merchant_led_by_composite")]
AFTER = [("merchants", "0010_event_object_id")]


@pytest.mark.django_db(transaction=True)
def test_existing_events_take_the_object_id_of_their_payload() -> None:
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        bank = old.get_model("members", "MemberBank").objects.create(
            code="MIG", name_zh="迁", name_en="Mig", kind="joint_stock", joined_on=dt.date(2025, 1, 1)
        )
        merchant = old.get_model("merchants", "Merchant").objects.create(
            code="MIG-1", legal_name="Mig", display_name="Mig", sponsor_bank=bank
        )
        events = old.get_model("merchants", "Event").objects
        events.create(public_id="evt_a", merchant=merchant, type="payment.succeeded", payload={"id": "pay_a"})
        events.create(public_id="evt_b", merchant=merchant, type="payment.created", payload={"other": 1})
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps.get_model("merchants", "Event").objects
        assert dict(new.values_list("public_id", "object_id")) == {"evt_a": "pay_a", "evt_b": ""}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
