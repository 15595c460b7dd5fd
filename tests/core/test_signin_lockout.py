"""The sign-in lockout (core.signin) on the operators' admin, shared with the cardholder portal."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from core import signin
from core.models import AuditLog
from tests.factories import PASSWORD, AllianceOperatorFactory, UserFactory, make_cardholder

pytestmark = pytest.mark.django_db

LOCKED_EN = "Too many failed sign-ins. Please wait 15 minutes and try again."


def client(address: str = "10.1.1.1") -> Client:
    return Client(headers={"accept-language": "en"}, REMOTE_ADDR=address)


def admin_sign_in(c: Client, username: str, password: str) -> Any:
    return c.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})


def test_admin_locks_a_username_out_after_five_failures_with_a_clear_message_and_an_audit_row() -> None:
    operator = AllianceOperatorFactory()
    c = client()
    for _ in range(5):
        response = admin_sign_in(c, operator.username, "wrong")
        assert response.status_code == 200
        assert LOCKED_EN not in response.content.decode()
    locked = admin_sign_in(c, operator.username, PASSWORD)
    assert locked.status_code == 429
    assert LOCKED_EN in locked.content.decode()
    assert "_auth_user_id" not in c.session
    # from another address too: the username is locked, wherever the guesses come from
    assert admin_sign_in(client("10.9.9.9"), operator.username, PASSWORD).status_code == 429
    row = AuditLog.objects.get(action="auth.signin_locked")
    assert (row.object_type, row.object_id, row.actor_label) == ("auth.user", str(operator.pk), "system")
    assert row.after == {
        "surface": "admin",
        "scope": "username",
        "failures": 5,
        "locked_seconds": 900,
        "address": "10.1.1.1",
    }
    # another operator from the same address is not locked out
    other = AllianceOperatorFactory()
    assert admin_sign_in(c, other.username, PASSWORD).status_code == 302


def test_the_lockout_ends_after_its_period(monkeypatch: pytest.MonkeyPatch) -> None:
    operator = AllianceOperatorFactory()
    for _ in range(5):
        admin_sign_in(client(), operator.username, "wrong")
    assert admin_sign_in(client(), operator.username, PASSWORD).status_code == 429
    later = time.time() + 15 * 60 + 1
    monkeypatch.setattr(signin, "time", SimpleNamespace(time=lambda: later))
    assert admin_sign_in(client(), operator.username, PASSWORD).status_code == 302


def test_admin_locks_an_address_out_after_twenty_failures_for_any_usernames() -> None:
    operators = [AllianceOperatorFactory() for _ in range(5)]
    c = client("10.2.2.2")
    for n in range(20):
        assert admin_sign_in(c, operators[n % 5].username, "wrong").status_code == 200
    fresh = AllianceOperatorFactory()
    assert admin_sign_in(c, fresh.username, PASSWORD).status_code == 429
    assert admin_sign_in(client("10.3.3.3"), fresh.username, PASSWORD).status_code == 302
    row = AuditLog.objects.get(action="auth.signin_locked")  # four failures each: no username is locked
    assert (row.object_type, row.object_id, row.after["scope"], row.after["failures"]) == (
        "address",
        "10.2.2.2",
        "address",
        20,
    )


def test_a_success_clears_the_usernames_count_but_not_the_addresses() -> None:
    operator = AllianceOperatorFactory()
    c = client()
    for _ in range(4):
        admin_sign_in(c, operator.username, "wrong")
    assert admin_sign_in(c, operator.username, PASSWORD).status_code == 302
    c.logout()
    for _ in range(4):
        assert admin_sign_in(c, operator.username, "wrong").status_code == 200
    assert admin_sign_in(c, operator.username, PASSWORD).status_code == 302
    assert not AuditLog.objects.filter(action="auth.signin_locked").exists()


def test_a_right_password_without_admin_access_counts_as_a_failure() -> None:
    cardholder_user = UserFactory(is_staff=False)
    c = client()
    for _ in range(5):
        assert admin_sign_in(c, cardholder_user.username, PASSWORD).status_code == 200
    assert admin_sign_in(c, cardholder_user.username, PASSWORD).status_code == 429


def test_portal_and_admin_share_one_count() -> None:
    holder = make_cardholder()
    username = holder.user.username
    c = client()
    for _ in range(3):
        c.post(reverse("login"), {"username": username, "password": "wrong"})
    for _ in range(2):
        admin_sign_in(c, username, "wrong")
    portal = c.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert portal.status_code == 429
    assert LOCKED_EN in portal.content.decode()
    assert AuditLog.objects.get(action="auth.signin_locked").after["surface"] == "admin"


def test_an_unknown_username_is_locked_without_being_stored() -> None:
    c = client()
    for _ in range(5):
        admin_sign_in(c, "my-Secret-password!", "wrong")
    assert admin_sign_in(c, "my-secret-password!", "x").status_code == 429  # usernames compare case-insensitively
    row = AuditLog.objects.get(action="auth.signin_locked")
    assert (row.object_type, row.object_id, row.object_repr) == ("auth.user", "", "")
    assert "secret" not in str(row.after).lower()


def test_the_message_is_in_chinese_by_default() -> None:
    operator = AllianceOperatorFactory()
    c = Client(REMOTE_ADDR="10.4.4.4")
    for _ in range(5):
        admin_sign_in(c, operator.username, "wrong")
    assert "登录失败次数过多，请等待 15 分钟后再试。" in admin_sign_in(c, operator.username, PASSWORD).content.decode()


def test_a_lockout_is_recorded_once() -> None:
    request = RequestFactory().post("/", REMOTE_ADDR="10.5.5.5")
    started = [signin.signin_failed(request, "someone", surface="admin") for _ in range(12)]
    assert [n for n, lockout in enumerate(started) if lockout is not None] == [4]
    assert AuditLog.objects.filter(action="auth.signin_locked").count() == 1


def test_client_address_behind_trusted_proxies(settings: Any) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert signin.client_address(request) == "10.0.0.1"  # no proxy trusted: the header is the caller's to forge
    settings.TRUSTED_PROXY_COUNT = 1
    assert signin.client_address(request) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 3  # fewer entries than proxies: fall back to the connection
    assert signin.client_address(request) == "10.0.0.1"


def _lock_out(username: str) -> None:
    c = client("10.2.2.2")
    for _ in range(5):
        admin_sign_in(c, username, "wrong")
    assert admin_sign_in(client("10.3.3.3"), username, PASSWORD).status_code == 429


def test_an_alliance_operator_lifts_a_users_lockout_and_it_is_audited() -> None:
    locked, bystander = AllianceOperatorFactory(), AllianceOperatorFactory()
    _lock_out(locked.username)
    support = AllianceOperatorFactory()
    c = client("10.4.4.4")
    assert admin_sign_in(c, support.username, PASSWORD).status_code == 302
    changelist = reverse("admin:auth_user_changelist")
    response = c.post(
        changelist, {"action": "lift_signin_lockout", "_selected_action": [locked.pk, bystander.pk]}, follow=True
    )
    messages = [str(message) for message in response.context["messages"]]
    assert messages == [f"Sign-in lockout lifted for: {locked.username}"]  # the bystander was not locked
    assert admin_sign_in(client("10.3.3.3"), locked.username, PASSWORD).status_code == 302
    row = AuditLog.objects.get(action="auth.signin_unlocked")
    assert (row.object_id, row.actor_id) == (str(locked.pk), support.pk)
    # Nothing locked: nothing lifted, nothing audited.
    again = c.post(changelist, {"action": "lift_signin_lockout", "_selected_action": [locked.pk]}, follow=True)
    assert "None of them was locked out." in again.content.decode()
    assert AuditLog.objects.filter(action="auth.signin_unlocked").count() == 1


def test_a_bank_operator_lifts_a_cardholders_lockout_from_the_cardholder_page() -> None:
    from django.contrib.auth.models import Group

    from core.scoping import BANK_OPERATORS
    from members.models import BankOperator
    from tests.factories import CardFactory, CardProductFactory, MemberBankFactory, StaffFactory

    bank = MemberBankFactory()
    holder = make_cardholder()
    CardFactory(cardholder=holder, product=CardProductFactory(bank=bank))
    _lock_out(holder.user.username)
    operator = StaffFactory()
    operator.groups.add(Group.objects.get(name=BANK_OPERATORS))
    BankOperator.objects.create(user=operator, bank=bank, role=BankOperator.Role.OPERATOR)
    c = client("10.5.5.5")
    assert c.login(username=operator.username, password=PASSWORD)
    c.post(
        reverse("admin:members_cardholder_changelist"),
        {"action": "lift_signin_lockout", "_selected_action": [holder.pk]},
    )
    portal = client("10.3.3.3").post(reverse("login"), {"username": holder.user.username, "password": PASSWORD})
    assert portal.status_code == 302
    assert AuditLog.objects.get(action="auth.signin_unlocked").actor_id == operator.pk
