"""Adjustments are checked when requested, not only when approved: the cardholder holds a card at the programme's
bank, the amount is within bounds; nothing is written when they are refused. The admin's request page offers only the
programmes of the operator's bank, so a cardholder outside it is refused."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from core.approvals import approval_approve
from core.errors import MengkaError, NotFound, ValidationFailed
from core.models import ApprovalRequest, AuditLog
from rewards import services as s
from rewards.models import LedgerTransaction
from tests.factories import (
    CardholderFactory,
    MemberBankFactory,
    PointsProgramFactory,
    StaffFactory,
    bank_operator,
    card_at,
)
from tests.i18n import shown
from tests.rewards.test_ledger_reads_admin import operator_of

pytestmark = pytest.mark.django_db


def _request(**overrides):
    fields = {"amount": 40, "reason": "lost earn", "requested_by": StaffFactory(), **overrides}
    return s.adjustment_request(**fields)


def _nothing_written() -> None:
    assert ApprovalRequest.objects.count() == 0
    assert AuditLog.objects.filter(object_type="core.approvalrequest").count() == 0


def test_a_cardholder_that_does_not_exist_is_refused_and_nothing_written() -> None:
    program = PointsProgramFactory()
    with pytest.raises(NotFound) as refused:
        _request(cardholder_id=987654321, program=program)
    assert refused.value.param == "cardholder"
    _nothing_written()


@pytest.mark.parametrize("status", ["pending_verification", None])
def test_a_cardholder_with_no_card_at_the_programmes_bank_is_refused(status) -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    card_at(holder, MemberBankFactory())  # a card at another bank does not count
    if status:
        card_at(holder, program.bank, status=status)  # nor an unverified binding at this one
    with pytest.raises(ValidationFailed) as refused:
        _request(cardholder_id=holder.pk, program=program)
    assert (refused.value.param, refused.value.code) == ("cardholder", "cardholder_not_at_bank")
    _nothing_written()


@override_settings(POINTS_ADJUSTMENT_MAX=500)
@pytest.mark.parametrize("amount", [501, -501, 0, 10**12])
def test_an_amount_out_of_bounds_is_refused_at_request_time(amount) -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    card_at(holder, program.bank)
    with pytest.raises(ValidationFailed) as refused:
        _request(cardholder_id=holder.pk, program=program, amount=amount)
    assert refused.value.param == "amount"
    _nothing_written()


@override_settings(POINTS_ADJUSTMENT_MAX=500)
def test_the_bounds_are_inclusive_and_approval_checks_again() -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    card = card_at(holder, program.bank)
    assert _request(cardholder_id=holder.pk, program=program, amount=-500).payload["amount"] == -500
    request = _request(cardholder_id=holder.pk, program=program, amount=500)
    checker = bank_operator(program.bank)
    with override_settings(POINTS_ADJUSTMENT_MAX=100), pytest.raises(ValidationFailed):
        approval_approve(request_id=request.pk, checker=checker)
    type(card).objects.filter(pk=card.pk).update(status="pending_verification")
    with pytest.raises(ValidationFailed):
        approval_approve(request_id=request.pk, checker=checker)
    request.refresh_from_db()
    assert (request.status, request.checker_id, request.result_id) == ("pending", None, "")
    assert LedgerTransaction.objects.filter(kind="adjust").count() == 0


def test_the_admin_form_shows_the_refusal_and_writes_nothing() -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    card_at(holder, MemberBankFactory())
    _maker, client = operator_of(program.bank)
    url = reverse("admin:rewards_account_adjust")
    # A cardholder without a card at the operator's bank is refused by the field.
    response = client.post(url, {"cardholder": holder.pk, "program": program.pk, "amount": 40, "reason": "x"})
    assert response.status_code == 200
    assert response.context["form"].errors["cardholder"] == [
        shown("This cardholder holds no card at the programme's bank.")
    ]
    card_at(holder, program.bank)
    with override_settings(POINTS_ADJUSTMENT_MAX=10):
        response = client.post(url, {"cardholder": holder.pk, "program": program.pk, "amount": 40, "reason": "x"})
    assert response.status_code == 200
    assert response.context["form"].errors["amount"] == [
        shown("An adjustment is at most %(limit)d points either way.", limit=10)
    ]
    _nothing_written()


def test_the_request_page_offers_only_the_operators_programmes() -> None:
    program, elsewhere = PointsProgramFactory(), PointsProgramFactory()
    holder = CardholderFactory()
    card_at(holder, elsewhere.bank)
    _operator, client = operator_of(program.bank)
    url = reverse("admin:rewards_account_adjust")
    offered = client.get(url).context["form"].fields["program"].queryset
    assert list(offered) == [program]
    response = client.post(url, {"cardholder": holder.pk, "program": elsewhere.pk, "amount": 40, "reason": "x"})
    assert "program" in response.context["form"].errors
    _nothing_written()
    auditor_client = operator_of(program.bank)[1]
    auditor_client.force_login(StaffFactory())  # staff with no role: no page
    assert auditor_client.get(url).status_code == 403


def test_a_refusal_is_a_domain_error_with_its_param() -> None:
    program = PointsProgramFactory()
    with pytest.raises(MengkaError) as refused:
        s.adjustment_check(cardholder_id=None, program=program, amount=1)
    assert refused.value.param == "cardholder"
