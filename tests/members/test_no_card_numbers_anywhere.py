"""Binds cards through the portal view and through the service, then looks for the card numbers everywhere they could
have leaked: every column of every table, the logs, the sessions, the cache and the task queue."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from celery.signals import task_prerun
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse

from core.logging import RedactingFilter
from members import services
from members.issuers import SandboxIssuerVerifier
from members.models import BindingStatus, Card
from tests.factories import PASSWORD, BinRangeFactory, card_number_for, make_cardholder

pytestmark = pytest.mark.django_db(transaction=True)


def _all_table_text() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                chunks.append(repr(row))
    return "\n".join(chunks)


def _cache_text() -> str:
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        return "\n".join(repr(key) + repr(client.dump(key)) for key in client.scan_iter("*"))
    store: dict[str, Any] = cache._cache  # type: ignore[attr-defined]
    return "\n".join(repr(key) + repr(pickle.loads(value)) for key, value in store.items())


def _variants(pan: str) -> list[str]:
    spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    return [pan, spaced, pan[:-4]]  # the whole number, grouped, and everything but the last four


def test_card_numbers_never_leave_memory(caplog: pytest.LogCaptureFixture) -> None:
    tasks: list[tuple[Any, Any]] = []

    def capture(sender: Any = None, args: Any = None, kwargs: Any = None, **extra: Any) -> None:
        tasks.append((args, kwargs))

    task_prerun.connect(capture, weak=False)
    handler_output: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_output.append(self.format(record))

    from core.logging import JsonFormatter

    project_handler = Collect(level=logging.DEBUG)
    project_handler.setFormatter(JsonFormatter())
    project_handler.addFilter(RedactingFilter())
    raw_messages: list[str] = []

    class Raw(logging.Handler):
        """First in line, before any filter of the project's handlers: what the code itself asked to log."""

        def emit(self, record: logging.LogRecord) -> None:
            raw_messages.append(record.getMessage() + repr(record.args) + repr(record.exc_info))

    raw_handler = Raw(level=logging.DEBUG)
    root = logging.getLogger()
    root.handlers.insert(0, raw_handler)
    root.addHandler(project_handler)
    caplog.set_level(logging.DEBUG)
    try:
        bin_range = BinRangeFactory(prefix="625555")
        portal_pan = card_number_for(bin_range, 700001)
        service_pan = card_number_for(bin_range, 700002)
        refused_pan = card_number_for(bin_range, 700003)

        # Through the portal view, with a mistyped attempt first.
        holder = make_cardholder(phone="13500000001")
        client = Client()
        assert (
            client.post(reverse("login"), {"username": holder.user.username, "password": PASSWORD}).status_code == 302
        )
        spaced = " ".join(portal_pan[i : i + 4] for i in range(0, 16, 4))
        assert client.post(reverse("members:card_bind"), {"card_number": spaced, "expiry": "01/20"}).status_code == 422
        response = client.post(reverse("members:card_bind"), {"card_number": spaced, "expiry": "12/31"})
        assert response.status_code == 302
        challenge = Card.objects.get(cardholder=holder).challenges.get()
        code = SandboxIssuerVerifier().code_for(holder.phone_hash, challenge.issuer_reference)
        assert client.post(response["Location"], {"code": code}).status_code == 302

        # Through the service, and one refused as a duplicate by another cardholder.
        other = make_cardholder(phone="13500000002")
        verifier = SandboxIssuerVerifier()
        started = services.card_bind_start(
            cardholder=other, card_number=service_pan, expiry_month=6, expiry_year=2030, verifier=verifier
        )
        services.binding_verify(
            cardholder=other,
            challenge_id=started.pk,
            code=verifier.code_for(other.phone_hash, started.issuer_reference),
            verifier=verifier,
        )
        with pytest.raises(services.Conflict):
            services.card_bind_start(
                cardholder=holder, card_number=service_pan, expiry_month=6, expiry_year=2030, verifier=verifier
            )
        logging.getLogger("members.test").debug("binding %s refused for holder %s", refused_pan, holder.pk)

        assert Card.objects.filter(status=BindingStatus.ACTIVE).count() == 2
        assert tasks, "the binding enqueues its expiry task: the capture must see it"

        logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records) + "\n".join(handler_output)
        sessions = "\n".join(repr(s.get_decoded()) for s in Session.objects.all())
        places = {
            "tables": _all_table_text(),
            "logs (handlers)": "\n".join(handler_output),
            "sessions": sessions,
            "cache": _cache_text(),
            "tasks": repr(tasks),
        }
        for pan in (portal_pan, service_pan):
            for variant in _variants(pan):
                for place, text in places.items():
                    assert variant not in text, f"a card number leaked into {place}"
        # Our code never asks to log a card number at all (the raw records, before any redaction)...
        raw = "\n".join(raw_messages)
        for pan in (portal_pan, service_pan):
            assert pan not in raw
        # ...and the one this test logs on purpose proves the capture works and that the project's handlers mask it.
        assert refused_pan in raw
        assert refused_pan not in "\n".join(handler_output)
        assert f"[PAN ****{refused_pan[-4:]}]" in "\n".join(handler_output)
        for pan in (portal_pan, service_pan):
            assert pan not in logs
        assert "\n".join(handler_output), "the handler must have seen log lines"
    finally:
        root.removeHandler(project_handler)
        root.removeHandler(raw_handler)
        task_prerun.disconnect(capture)
