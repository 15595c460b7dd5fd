"""Suite-wide fixtures and the Redis gate.

Every test runs on PostgreSQL: the server DATABASE_URL names, or the embedded one (settings/embedded.py). Tests marked
`redis` run when REDIS_URL is set (always in CI) and are skipped with the reason otherwise. In CI a missing Redis is
an error, never a silent skip.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings

pytest_plugins = ["tests.simulator_fixtures", "tests.redis_faults"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings.SETTINGS_MODULE != "settings.test":
        raise pytest.UsageError(
            f"The suite runs with settings.test, not {settings.SETTINGS_MODULE}: "
            "unset DJANGO_SETTINGS_MODULE or use make test."
        )
    if os.environ.get("CI") == "true" and not settings.REDIS_URL:
        raise pytest.UsageError("CI runs the suite with Redis: set REDIS_URL.")
    skip_redis = pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://... to run it")
    for item in items:
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(skip_redis)


@pytest.fixture(autouse=True)
def _audit_guard_survives_flush(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Transactional tests end with a flush (TRUNCATE/DELETE of every table), which the audit log's append-only
    triggers refuse. Lift the guard just for that flush and put it back before the next test."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(marker and marker.kwargs.get("transaction"))
    if not transactional:
        yield
        return
    from importlib import import_module

    from django.db import connection

    guard = import_module("core.migrations.0002_audit_append_only")
    request.getfixturevalue("transactional_db")
    guard.install_guard(connection)
    yield
    guard.remove_guard(connection)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def alliance_user(db):  # type: ignore[no-untyped-def]
    from tests.factories import AllianceOperatorFactory

    return AllianceOperatorFactory()


@pytest.fixture(autouse=True)
def _ledger_seal_export(settings, tmp_path):  # type: ignore[no-untyped-def]
    """Each test exports sealed ledger heads to its own directory."""
    settings.STORAGES = {
        **settings.STORAGES,
        "ledger_seals": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "ledger-seals")},
        },
    }


@pytest.fixture(scope="session", autouse=True)
def operator_groups_snapshot(
    request: pytest.FixtureRequest, django_db_blocker: Any
) -> dict[str, list[tuple[str, str]]]:
    """The operator groups and their permissions as the data migrations made them, read once as the session starts,
    before any transactional test's flush empties the database (a flush recreates content types and permissions, not
    groups): the browser tests put them back (tests/browser/conftest.py). A session of tests that use no database
    (the simulator's alone) has no test database to read."""
    from django.contrib.auth.models import Group

    database_fixtures = {"db", "transactional_db", "django_db_setup"}
    if not any(
        item.get_closest_marker("django_db") or database_fixtures & set(getattr(item, "fixturenames", ()))
        for item in request.session.items
    ):
        return {}
    request.getfixturevalue("django_db_setup")
    with django_db_blocker.unblock():
        return {
            group.name: list(group.permissions.values_list("content_type__app_label", "codename"))
            for group in Group.objects.prefetch_related("permissions")
        }


@pytest.fixture
def operator_groups_restored(
    transactional_db: None, operator_groups_snapshot: dict[str, list[tuple[str, str]]]
) -> None:
    """For a transactional test that signs operators in: the groups as the migrations made them."""
    from tests.factories import restore_operator_groups

    restore_operator_groups(operator_groups_snapshot)


@pytest.fixture(autouse=True)
def replica_only_when_asked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """With a replica configured (CI sets DATABASE_REPLICA_URL), only the tests that name it among their databases
    read it; every other test reads the primary, as without a replica. The replica's connection is closed after a
    test that used it, so that the test database can be dropped at the end."""
    from django.db import connections

    from core import replicas

    marker = request.node.get_closest_marker("django_db")
    databases = marker.kwargs.get("databases") if marker else None
    asked = databases == "__all__" or (databases is not None and replicas.REPLICA in databases)
    if not asked:
        monkeypatch.setattr(replicas, "replica_configured", lambda: False)
    yield
    if asked and replicas.REPLICA in settings.DATABASES:
        connections[replicas.REPLICA].close()
