"""The test suite: on DATABASE_URL's PostgreSQL server, or the embedded one; Redis when REDIS_URL is set, locmem
otherwise."""

from .base import *  # noqa: F403
from .base import LOGGING

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tasks run inline in tests; the worker test drives a real worker explicitly.
CELERY_TASK_ALWAYS_EAGER = True
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
LOGGING["root"]["level"] = "WARNING"  # type: ignore[index]
SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
FIELD_ENCRYPTION_KEY = "test-field-encryption-key"
FINGERPRINT_KEY = "test-fingerprint-key"
ROUTING_CONFIG_TTL = 0.0  # every decision checks the configuration version
POINTS_PROGRAM_CACHE_TTL = 0.0  # every payment reads the programme (the cache has its own test)
CALENDAR_CACHE_TTL = 0.0  # tests change the calendar between calls; the holding has its own test
LEDGER_SEAL_KEY = "test-ledger-seal-key"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PUBLIC_BASE_URL = "http://testserver"
