"""Every change list: its query count pinned (the same at 5 rows as at 50), and its CSV export streamed, scoped,
filtered, formula-safe and audited."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.admin_base import ScopedAdmin, csv_safe
from core.models import AuditLog
from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory, bank_operator

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)
LISTS = [(model, model_admin) for model, model_admin in REGISTRY if isinstance(model_admin, ScopedAdmin)]
# One row per risk grade, all seeded by a migration: the list cannot grow, its count is what it is.
FIXED_SIZE = {"payments.reservepolicy"}
WALKED = [(model, model_admin) for model, model_admin in LISTS if model._meta.label_lower not in FIXED_SIZE]


def _login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _changelist(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _export(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_export")


def _rows(response: Any) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "model_admin"), WALKED, ids=[m._meta.label_lower for m, _ in WALKED])
def test_list_query_count_is_the_same_at_5_and_50_rows(model: Any, model_admin: Any) -> None:
    factory = FACTORIES[model._meta.label_lower]
    few_rows, many_rows = 5, 50
    for _ in range(few_rows):
        factory()
    client = _login(AllianceOperatorFactory())
    url = _changelist(model)
    assert client.get(url).status_code == 200  # caches warmed
    with CaptureQueriesContext(connection) as few:
        response = client.get(url)
    assert response.status_code == 200
    shown = response.context["cl"].result_count
    for _ in range(many_rows - few_rows):
        factory()
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert response.context["cl"].result_count >= shown + many_rows - few_rows
    assert len(many) == len(few), "\n".join(query["sql"][:200] for query in many.captured_queries)


def test_formula_cells_are_defused() -> None:
    assert csv_safe("=SUM(A1)") == "'=SUM(A1)"
    assert csv_safe("+86 10") == "'+86 10"
    assert csv_safe("-1") == "'-1"
    assert csv_safe("@cmd") == "'@cmd"
    assert csv_safe("plain") == "plain"
    assert csv_safe(-5) == -5  # numbers stay numbers


@pytest.mark.django_db
def test_export_streams_the_scoped_filtered_list_and_is_audited() -> None:
    from merchants.models import Merchant
    from payments.models import PaymentIntent

    ours = FACTORIES["payments.paymentintent"]()
    also_ours = FACTORIES["payments.paymentintent"]()
    PaymentIntent.objects.filter(pk=also_ours.pk).update(
        issuer=ours.issuer, acquirer=ours.acquirer, merchant=ours.merchant, status="failed"
    )
    theirs = FACTORIES["payments.paymentintent"]()
    user = bank_operator(ours.issuer)
    client = _login(user)
    client.cookies["django_language"] = "en"

    everything = _rows(client.get(_export(PaymentIntent)))
    header, rows = everything[0], everything[1:]
    assert "amount" in header
    ids = {row[header.index("id")] for row in rows}
    assert ids == {ours.public_id, also_ours.public_id}
    assert theirs.public_id not in ids

    filtered = _rows(client.get(_export(PaymentIntent), {"status__exact": "failed"}))
    assert [row[header.index("id")] for row in filtered[1:]] == [also_ours.public_id]

    audit = AuditLog.objects.filter(action="admin.export").order_by("-id").first()
    assert audit is not None
    assert audit.actor_label == user.username
    assert audit.object_type == "payments.paymentintent"
    assert audit.after["rows"] == 1
    assert audit.after["complete"] is True
    assert audit.after["query"] == "status__exact=failed"
    assert audit.bank_id == ours.issuer_id

    Merchant.objects.filter(pk=ours.merchant_id).update(legal_name='=HYPERLINK("http://x")')
    merchants = _rows(client.get(_export(Merchant)))
    assert merchants[1][merchants[0].index("legal name")] == '\'=HYPERLINK("http://x")'

    page = client.get(_changelist(PaymentIntent), {"status__exact": "failed"})
    assert f'{_export(PaymentIntent)}?status__exact=failed"'.encode() in page.content


@pytest.mark.django_db
def test_export_of_a_list_the_operator_cannot_see_is_refused_and_bad_filters_are_400() -> None:
    from core.models import IdempotencyRecord
    from payments.models import PaymentIntent

    payment = FACTORIES["payments.paymentintent"]()
    client = _login(bank_operator(payment.issuer))
    assert client.get(_export(IdempotencyRecord)).status_code == 403  # the alliance's alone
    assert client.get(_export(PaymentIntent), {"nonsense__field": "1"}).status_code == 400
    assert not AuditLog.objects.filter(action="admin.export").exists()
