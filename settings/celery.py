"""The Celery app: configured from Django settings (CELERY_*), tasks discovered in every app."""

import os

from celery import Celery

# A deployed worker or beat is production unless its environment says otherwise (as the WSGI and ASGI entry points);
# a development worker sets DJANGO_SETTINGS_MODULE=settings.dev.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.prod")

app = Celery("mengka")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
