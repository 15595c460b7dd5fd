"""Property-based requests generated from the OpenAPI schema: no operation ever answers 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from merchants.services import api_key_create
from tests.factories import CardFactory, ChannelFactory, MerchantFactory

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())


@pytest.fixture
def bearer(db: Any, monkeypatch: pytest.MonkeyPatch, keep_db_connection: None) -> str:
    from merchants.authentication import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "100000/second"})
    merchant = MerchantFactory()
    ChannelFactory(acquirer=merchant.sponsor_bank)
    CardFactory(token="card_test_00000001")
    return api_key_create(merchant=merchant).raw_key


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, bearer: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {bearer}"}
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"type", "code", "message", "param"}
