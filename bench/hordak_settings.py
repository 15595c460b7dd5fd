"""Settings for the django-hordak side of bench/ledger.py: hordak's own apps, in the database of DATABASE_URL (set by
bench/common.py to a database of the run's own)."""

from __future__ import annotations

import os

import environ

_db = environ.Env.db_url_config(os.environ["DATABASE_URL"])

SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mptt", "djmoney", "hordak"]
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_CURRENCY = "CNY"
CURRENCIES = ("CNY",)
HORDAK_DECIMAL_PLACES = 4
