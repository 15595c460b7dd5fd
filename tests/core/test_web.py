from __future__ import annotations

import json
import logging
import re

import pytest
from django.test import Client
from django.urls import reverse

from core.logging import JsonFormatter, RedactingFilter, RequestIdFilter, redact
from core.requestid import reset_request_id, set_request_id

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_redis(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["redis"]["configured"] is bool(settings.REDIS_URL)


def test_healthz_is_degraded_when_redis_is_unreachable_and_503_when_the_database_is(  # type: ignore[no-untyped-def]
    client: Client, settings, monkeypatch
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 200  # the platform serves on its fallbacks (tests/core/test_redis_down.py)
    assert response.json()["status"] == "degraded"
    assert response.json()["redis"]["error"] == "ConnectionError"
    monkeypatch.setattr("core.health.check_database", lambda: {"ok": False, "error": "OperationalError"})
    response = client.get("/healthz")
    assert (response.status_code, response.json()["status"]) == (503, "down")


def test_home_links_portal_admin_and_api_docs_in_chinese_by_default(client: Client) -> None:
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    for url in (reverse("members:dashboard"), reverse("admin:index"), reverse("api-docs")):
        assert f'href="{url}"' in html
    assert "持卡人门户" in html
    assert 'lang="zh-hans"' in html


def test_language_switch_to_english(client: Client) -> None:
    response = client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert response.status_code == 302
    html = client.get("/").content.decode()
    assert "Cardholder portal" in html
    assert 'lang="en"' in html


def test_assets_are_served_locally(client: Client) -> None:
    html = client.get("/").content.decode()
    assert "http://" not in html.replace('xmlns="http://', "")
    assert "https://" not in html
    docs = client.get(reverse("api-docs")).content.decode()
    assert "swagger-ui" in docs
    # Every asset the page loads is ours (a random nonce in the page may spell "cdn": look at addresses only).
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs)
    assert assets
    assert all(asset.startswith("/static/") for asset in assets), assets
    assert not re.search(r"https?://", docs)


def test_every_response_carries_a_request_id(client: Client) -> None:
    generated = client.get("/healthz")
    assert generated["Request-Id"].startswith("req_")
    echoed = client.get("/healthz", HTTP_X_REQUEST_ID="abc-12345678")
    assert echoed["Request-Id"] == "abc-12345678"
    refused = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert refused["Request-Id"].startswith("req_")


@pytest.mark.parametrize(
    ("raw", "leaked"),
    [
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
        ("pan=4111111111111111", "4111111111111111"),
        ("Authorization: Bearer sk_live_abcdef123456", "sk_live_abcdef123456"),
        ('{"password": "hunter22"}', "hunter22"),
        ("otp=123456 sent", "123456"),
        ("endpoint secret whsec_Ab3d-Ef6h_Ij9kLm-NoPq", "Ef6h_Ij9kLm-NoPq"),  # URL-safe: past any - or _
        ("paid by agt_Qw3rTy7uIoP9aSdF1gHj", "Qw3rTy7uIoP9aSdF1gHj"),
        ("key sk_live_ab-cd_efgh1234", "efgh1234"),
    ],
)
def test_redaction(raw: str, leaked: str) -> None:
    assert leaked not in redact(raw)


def test_order_numbers_that_fail_luhn_are_kept() -> None:
    assert redact("order 1234567890123") == "order 1234567890123"


def test_log_lines_are_json_with_request_id_and_no_card_numbers() -> None:
    record = logging.LogRecord("mengka", logging.INFO, __file__, 1, "charging %s", ("4111111111111111",), None)
    token = set_request_id("req_log_test_1234")
    try:
        for log_filter in (RequestIdFilter(), RedactingFilter()):
            log_filter.filter(record)
    finally:
        reset_request_id(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req_log_test_1234"
    assert "4111111111111111" not in line["message"]
    assert line["message"] == "charging [PAN ****1111]"
