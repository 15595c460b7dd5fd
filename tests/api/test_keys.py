"""API keys: issue, hash-only storage, bearer authentication, scopes, revocation, rotation, throttling."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.models import AuditLog
from merchants.models import ApiKey
from merchants.services import api_key_create, api_key_revoke, api_key_rotate, api_key_touch
from tests.api.conftest import Api, World, idem, new_api
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def test_key_is_stored_as_hash_and_prefix_only() -> None:
    merchant = MerchantFactory()
    issued = api_key_create(merchant=merchant, mode="live", scope="read")
    raw = issued.raw_key
    assert raw.startswith("sk_live_")
    assert len(raw) > 40
    key = ApiKey.objects.get()
    assert key.prefix == raw[:12]
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = [str(value) for value in ApiKey.objects.values().get().values()]
    assert raw not in stored
    assert not AuditLog.objects.filter(after__icontains=raw[12:]).exists()
    assert AuditLog.objects.filter(action="api_key.create").count() == 1


def test_authentication_failures_are_401_json() -> None:
    merchant = MerchantFactory()
    issued = api_key_create(merchant=merchant)
    api = Api(issued.raw_key)
    assert api.get("payments")[0] == 200
    cases = {
        "missing": None,
        "wrong scheme": f"Basic {issued.raw_key}",
        "unknown": "Bearer sk_test_unknown",
        "empty": "Bearer ",
        "too long": "Bearer " + "x" * 500,
    }
    for name, header in cases.items():
        client = Api("")
        client.client.credentials(**({"HTTP_AUTHORIZATION": header} if header else {}))
        response = client.raw("get", "payments")
        assert response.status_code == 401, name
        assert response["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "authentication_failed"), name


def test_revoked_and_expired_keys_are_refused() -> None:
    merchant = MerchantFactory()
    revoked = api_key_create(merchant=merchant)
    api_key_revoke(api_key=revoked.api_key)
    assert Api(revoked.raw_key).get("payments")[0] == 401
    expired = api_key_create(merchant=merchant, expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert Api(expired.raw_key).get("payments")[0] == 401


def test_closed_merchant_keys_are_refused() -> None:
    merchant = MerchantFactory(status="closed")
    assert Api(api_key_create(merchant=merchant).raw_key).get("payments")[0] == 401


def test_rotation_keeps_the_old_key_for_the_overlap() -> None:
    merchant = MerchantFactory()
    old = api_key_create(merchant=merchant, mode="test", scope="read")
    new = api_key_rotate(api_key=old.api_key, overlap_hours=2)
    assert (new.api_key.mode, new.api_key.scope) == ("test", "read")
    old.api_key.refresh_from_db()
    assert old.api_key.expires_at is not None
    assert dt.timedelta(hours=1, minutes=59) < old.api_key.expires_at - timezone.now() <= dt.timedelta(hours=2)
    assert Api(old.raw_key).get("payments")[0] == 200
    assert Api(new.raw_key).get("payments")[0] == 200
    ApiKey.objects.filter(pk=old.api_key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert Api(old.raw_key).get("payments")[0] == 401
    assert Api(new.raw_key).get("payments")[0] == 200


def test_rotate_refuses_revoked_keys() -> None:
    from core.errors import Conflict

    issued = api_key_create(merchant=MerchantFactory())
    api_key_revoke(api_key=issued.api_key)
    with pytest.raises(Conflict):
        api_key_rotate(api_key=issued.api_key)


def test_read_key_cannot_write(world: World) -> None:
    read_only = new_api(world.merchant, scope="read")
    assert read_only.get("payments")[0] == 200
    status, error = read_only.post("stores", {"code": "S1", "name": "One"}, key=idem())
    assert status == 403
    assert error["error"]["type"] == "permission_error"
    assert read_only.raw("delete", "webhook-endpoints/1").status_code == 403


def test_last_used_is_written_at_most_once_a_minute(django_assert_num_queries: object) -> None:
    issued = api_key_create(merchant=MerchantFactory())
    key = issued.api_key
    api_key_touch(api_key=key)
    first = key.last_used_at
    assert first is not None
    api_key_touch(api_key=ApiKey.objects.get(pk=key.pk))
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - dt.timedelta(minutes=2))
    api_key_touch(api_key=ApiKey.objects.get(pk=key.pk))
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - dt.timedelta(minutes=1)


def test_authenticated_read_costs_no_write_within_the_minute(world: World) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    world.api.get("payments")
    with CaptureQueriesContext(connection) as queries:
        world.api.get("payments")
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


def test_create_merchant_key_command() -> None:
    merchant = MerchantFactory(code="SHOP-1")
    out, err = io.StringIO(), io.StringIO()
    call_command("create_merchant_key", "SHOP-1", "--mode", "live", "--scope", "read", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("sk_live_")
    key = ApiKey.objects.get(merchant=merchant)
    assert (key.mode, key.scope, key.key_hash) == ("live", "read", hashlib.sha256(raw.encode()).hexdigest())
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_merchant_key", "NOPE", stdout=out, stderr=err)


def test_rate_limit_per_key_gives_429_with_retry_after(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from merchants.authentication import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/minute"})
    # One window throughout: on the wall clock the four requests could fall on both sides of a minute.
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: 6_000_000.0 + 30)
    assert [world.api.get("payments")[0] for _ in range(3)] == [200, 200, 200]
    response = world.api.raw("get", "payments")
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response["Request-Id"]
    assert new_api(world.merchant).get("payments")[0] == 200  # counted per key


def test_the_rate_limit_counts_in_fixed_windows_and_retry_after_is_the_time_to_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from merchants.authentication import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/minute"})
    clock = [6_000_000.0 + 50]  # 50 s into a minute-long window
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: clock[0])
    assert [world.api.get("payments")[0] for _ in range(2)] == [200, 200]
    refused = world.api.raw("get", "payments")
    assert (refused.status_code, refused["Retry-After"]) == (429, "10")
    clock[0] += 10  # the next window
    assert world.api.get("payments")[0] == 200
