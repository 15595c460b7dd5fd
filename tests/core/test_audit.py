from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from core.audit import audit_record
from core.models import AuditLog
from core.requestid import reset_request_id, set_request_id
from tests.factories import MemberBankFactory, UserFactory


@pytest.mark.django_db
def test_audit_record_captures_actor_object_and_request() -> None:
    user = UserFactory()
    bank = MemberBankFactory()
    token = set_request_id("req_test_12345678")
    try:
        entry = audit_record(actor=user, action="bank.suspend", obj=bank, before={"status": "active"}, reason="test")
    finally:
        reset_request_id(token)
    entry.refresh_from_db()
    assert (entry.actor_label, entry.action, entry.object_type, entry.object_id) == (
        user.username,
        "bank.suspend",
        "members.memberbank",
        str(bank.pk),
    )
    assert entry.request_id == "req_test_12345678"
    assert entry.before == {"status": "active"}


@pytest.mark.django_db
def test_system_actor_when_no_user() -> None:
    assert audit_record(actor=None, action="job.run").actor_label == "system"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("statement", ["UPDATE core_auditlog SET action = 'forged'", "DELETE FROM core_auditlog"])
def test_database_refuses_update_and_delete(statement: str) -> None:
    audit_record(actor=None, action="original")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert list(AuditLog.objects.values_list("action", flat=True)) == ["original"]


@pytest.mark.django_db(transaction=True)
def test_database_refuses_truncate_and_orm_update() -> None:
    audit_record(actor=None, action="original")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE core_auditlog")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.update(reason="rewritten")
    assert AuditLog.objects.get().reason == ""
