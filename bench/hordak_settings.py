"""Settings for the django-hordak side of bench/ledger.py: hordak's own apps and its own database (<name>_hordak)."""

from __future__ import annotations

import os

import environ

_db = environ.Env.db_url_config(os.environ["DATABASE_URL"])
_db["NAME"] = f"{_db['NAME']}_hordak"

SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mptt", "djmoney", "hordak"]
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_CURRENCY = "CNY"
CURRENCIES = ("CNY",)
HORDAK_DECIMAL_PLACES = 4
