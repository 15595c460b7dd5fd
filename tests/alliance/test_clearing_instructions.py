"""Clearing instructions through the simulator's clearing channel: sent once per reference, confirmed later, a
timeout settled by inquiry, a never-accepted instruction sent again under its reference."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from alliance import services
from alliance.models import ClearingInstruction, ClearingRun
from alliance.services.clearing import instruction_reference
from core.errors import Conflict, PermissionDenied
from core.models import AuditLog
from tests.alliance.test_clearing import YESTERDAY, funded, login
from tests.factories import AllianceOperatorFactory, MemberBankFactory, PointsProgramFactory, bank_operator

CHANNEL = "clearing-x"
NOW = dt.timedelta(0)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(sim: Any, settings: Any) -> Any:
    settings.CLEARING_CHANNEL = CHANNEL
    sim.set_faults(CHANNEL, payout_delay_ms=0)
    return sim


@pytest.fixture
def run(db: Any) -> ClearingRun:
    """A netted day: bank A pays 2.00 CNY, bank C receives it."""
    bank_a, bank_c = MemberBankFactory(code="AAA1"), MemberBankFactory(code="CCC1")
    program = PointsProgramFactory(bank=bank_c, point_value_cny=Decimal("0.005"))
    funded(program, bank_a, 400, "i1")
    return services.clearing_run(YESTERDAY)


def instructions() -> dict[str, ClearingInstruction]:
    return {i.party_code: i for i in ClearingInstruction.objects.all()}


def test_instructions_are_confirmed_and_the_run_settles(sim: Any, run: ClearingRun) -> None:
    assert {(i.direction, i.amount) for i in instructions().values()} == {("pay", 200), ("receive", 200)}
    sim.set_faults(CHANNEL, payout_delay_ms=3000)
    report = services.instructions_send()
    assert (report.sent, report.in_flight) == (2, 2)
    assert {i.status for i in instructions().values()} == {"sent"}
    assert all(i.channel_id.startswith("ci_") for i in instructions().values())
    assert services.instructions_poll(inquire_after=NOW).in_flight == 2  # accepted, not confirmed yet
    sim.set_clock((dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)).isoformat())
    report = services.instructions_poll(inquire_after=NOW)
    assert (report.confirmed, report.settled_runs) == (2, 1)
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.SETTLED
    assert run.settled_at is not None
    assert services.instructions_poll(inquire_after=NOW).counts() == {}
    # Asked again with the same reference, the channel answers the same instruction: never a second one.
    rows = sim.journal_all(op="clearing_instruction")
    assert len(rows) == 2


def test_a_timeout_never_accepted_is_sent_again_under_the_same_reference(sim: Any, run: ClearingRun) -> None:
    sim.set_faults(CHANNEL, timeout_rate=1.0)
    report = services.instructions_send()
    assert (report.sent, report.retried) == (2, 2)  # no answer, the inquiry finds nothing: pending again
    assert {i.status for i in instructions().values()} == {"pending"}
    sim.set_faults(CHANNEL, timeout_rate=0.0)
    report = services.instructions_send()
    assert report.confirmed == 2
    references = {i.reference for i in instructions().values()}
    assert {row["reference"] for row in sim.journal_all(op="clearing_instruction") if row["outcome"] == "ok"} == (
        references
    )
    assert all(i.attempts == 2 for i in instructions().values())
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.SETTLED


def test_an_accepted_timeout_is_found_by_inquiry(sim: Any, run: ClearingRun) -> None:
    sim.set_faults(CHANNEL, charged_timeout_rate=1.0)
    report = services.instructions_send()
    assert report.confirmed == 2  # the answer was lost; the inquiry found it accepted and confirmed (no delay)
    assert all(i.attempts == 1 for i in instructions().values())
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.SETTLED


def test_a_failed_instruction_fails_the_run(sim: Any, run: ClearingRun) -> None:
    sim.set_faults(CHANNEL, payout_return_rate=1.0)
    report = services.instructions_send()
    assert report.failed == 2
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.FAILED
    assert "beneficiary_refused" in run.error
    assert {i.failure_reason for i in instructions().values()} == {"beneficiary_refused"}


def test_a_sent_instruction_the_channel_never_saw_is_sent_again_by_the_poll(sim: Any, run: ClearingRun) -> None:
    ClearingInstruction.objects.update(status="sent", sent_at=dt.datetime.now(dt.UTC), attempts=1)  # died mid-send
    report = services.instructions_poll(inquire_after=NOW)
    assert (report.retried, report.confirmed) == (2, 2)
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.SETTLED


def test_a_failed_instruction_is_sent_again_under_a_new_reference(sim: Any, run: ClearingRun) -> None:
    sim.set_faults(CHANNEL, payout_return_rate=1.0)
    services.instructions_send()
    operator = AllianceOperatorFactory()
    payer = instructions()["AAA1"]
    with pytest.raises(PermissionDenied):
        services.instruction_resend(instruction_id=payer.pk, operator=bank_operator(payer.bank))
    assert instructions()["AAA1"].status == "failed"

    assert payer.reference == instruction_reference(run, "AAA1")
    resent = services.instruction_resend(instruction_id=payer.pk, operator=operator)
    assert (resent.reference, resent.status, resent.resends) == (f"{payer.reference}-r1", "pending", 1)
    assert (resent.failure_reason, resent.sent_at, resent.channel_id) == ("", None, "")
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.FAILED  # the receiver's instruction is still failed
    with pytest.raises(Conflict) as refused:
        services.instruction_resend(instruction_id=payer.pk, operator=operator)  # pending now: nothing to resend
    assert refused.value.code == "instruction_not_failed"
    receiver = services.instruction_resend(instruction_id=instructions()["CCC1"].pk, operator=operator)
    run.refresh_from_db()
    assert (run.status, run.error) == (ClearingRun.Status.INSTRUCTING, "")
    audit = AuditLog.objects.get(action="clearing.instruction_resend", object_id=str(payer.pk))
    assert audit.before == {"reference": payer.reference, "reason": "beneficiary_refused"}

    sim.set_faults(CHANNEL, payout_return_rate=0.0)
    report = services.instructions_send()
    assert (report.sent, report.confirmed, report.settled_runs) == (2, 2, 1)
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.SETTLED
    # The channel saw four instructions: the two that failed and the two under their new references.
    journal = {row["reference"]: row["outcome"] for row in sim.journal_all(op="clearing_instruction")}
    assert set(journal) == {payer.reference, f"{payer.reference}-r1", receiver.reference, receiver.reference[:-3]}


def test_the_admin_sends_failed_instructions_again_for_alliance_operators_only(sim: Any, run: ClearingRun) -> None:
    sim.set_faults(CHANNEL, payout_return_rate=1.0)
    services.instructions_send()
    ids = [str(i.pk) for i in instructions().values()]
    form = {"action": "resend", "_selected_action": ids}
    bank = login(bank_operator(instructions()["AAA1"].bank))
    listed = bank.get("/admin/alliance/clearinginstruction/")
    assert listed.status_code == 200
    assert b'value="resend"' not in listed.content  # a bank operator has no such action
    bank.post("/admin/alliance/clearinginstruction/", form)
    assert {i.status for i in instructions().values()} == {"failed"}

    alliance = login(AllianceOperatorFactory())
    assert b'value="resend"' in alliance.get("/admin/alliance/clearinginstruction/").content
    response = alliance.post("/admin/alliance/clearinginstruction/", form, follow=True)
    assert response.status_code == 200
    assert {(i.status, i.resends) for i in instructions().values()} == {("pending", 1)}
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.INSTRUCTING
