"""A deployed process loads the production settings unless its environment names others, and production stops at
start-up, naming what it lacks: it never falls back to development settings or starts an embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _start(module: str, **environment: str) -> subprocess.CompletedProcess[str]:
    unset = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY", "FINGERPRINT_KEY")
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env.update(environment)
    code = f"import {module}; from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("module", ["settings.wsgi", "settings.asgi", "settings.celery"])
def test_an_entry_point_without_settings_is_production_and_names_what_it_lacks(module: str) -> None:
    started = _start(module)
    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr
    assert "environment variable" in started.stderr
    assert "settings.dev" not in started.stdout


@pytest.mark.parametrize("module", ["settings.wsgi", "settings.celery"])
def test_production_without_a_database_url_stops_rather_than_start_an_embedded_server(module: str) -> None:
    secrets = {"SECRET_KEY": "k" * 50, "FIELD_ENCRYPTION_KEY": "f", "FINGERPRINT_KEY": "p", "ALLOWED_HOSTS": "x"}
    started = _start(module, **secrets)
    assert started.returncode != 0
    assert "DATABASE_URL" in started.stderr
    assert "embedded" not in started.stdout


def test_production_with_its_variables_starts() -> None:
    secrets = {"SECRET_KEY": "k" * 50, "FIELD_ENCRYPTION_KEY": "f", "FINGERPRINT_KEY": "p", "ALLOWED_HOSTS": "x"}
    started = _start("settings.celery", DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres", **secrets)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["settings.prod", "False"]
