"""Clearing instructions through the simulator's clearing channel: sent once per reference, confirmed later, a
timeout settled by inquiry, a never-accepted instruction sent again under its reference."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from alliance import services
from alliance.models import ClearingInstruction, ClearingRun
from tests.alliance.test_clearing import YESTERDAY, funded
from tests.factories import MemberBankFactory, PointsProgramFactory

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
