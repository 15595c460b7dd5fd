"""Clearing: a day's obligations netted to one position per party, rounded once to a zero sum, traceable."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from alliance import selectors, services
from alliance.models import ClearingComponent, ClearingInstruction, ClearingPosition, ClearingRun
from alliance.services import clearing as clearing_module
from core.calendar import SHANGHAI, local_now
from core.errors import Conflict, ValidationFailed
from core.money import round_to_zero_sum
from rewards import services as rewards
from rewards.models import LedgerTransaction
from tests.concurrency import run_parallel
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    CardholderFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    bank_operator,
)

YESTERDAY = local_now().date() - dt.timedelta(days=1)


def dated(txn: LedgerTransaction | None, day: dt.date = YESTERDAY, hour: int = 12) -> LedgerTransaction | None:
    """Puts a test's ledger transaction on `day` (the clearing reads the transaction's time)."""
    if txn is not None:
        at = dt.datetime.combine(day, dt.time(hour), tzinfo=SHANGHAI)
        LedgerTransaction.objects.redate([txn.pk], at)  # with its entries, as they always are
    return txn


def funded(program: Any, funder: Any, amount: int, key: str, day: dt.date = YESTERDAY, hour: int = 12) -> Any:
    """`funder` (a bank) pays for `amount` points of `program`: an obligation to `program`'s bank, dated `day`."""
    holder = CardholderFactory()
    txn = rewards.points_earn(
        cardholder_id=holder.pk,
        program=program,
        amount=amount,
        idempotency_key=key,
        source=rewards.EarnSource.CAMPAIGN,
        funded_by=rewards.Party("bank", funder.pk),
    )
    return dated(txn, day, hour)


# --- rounding: pure --------------------------------------------------------------------------------------------------


@given(
    st.lists(st.integers(min_value=-(10**12), max_value=10**12), min_size=1, max_size=30),
    st.sampled_from([1, 100, 10_000]),
)
def test_rounding_sums_to_zero_and_moves_each_amount_by_less_than_a_unit(amounts: list[int], per_minor: int) -> None:
    amounts = [*amounts, -sum(amounts)]  # obligations always sum to zero
    rounded = round_to_zero_sum(amounts, per_minor)
    assert sum(rounded) == 0
    for amount, minor in zip(amounts, rounded, strict=True):
        assert minor in (amount // per_minor, -(-amount // per_minor))


def test_rounding_ties_go_to_the_earlier_party() -> None:
    # Three parties: +1.00 fen, −0.50 fen, −0.50 fen. The two halves tie; the earlier one rounds up to 0.
    assert round_to_zero_sum([-50, -50, 100], 100) == [0, -1, 1]
    assert round_to_zero_sum([100, -50, -50], 100) == [1, 0, -1]
    with pytest.raises(ValueError, match="whole number of minor units"):
        round_to_zero_sum([1, 2], 100)


# --- the run ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    bank_a = MemberBankFactory(code="AAA1")
    bank_b = MemberBankFactory(code="BBB1")
    bank_c = MemberBankFactory(code="CCC1")
    src = PointsProgramFactory(bank=bank_a, point_value_cny=Decimal("0.005"))
    dst = PointsProgramFactory(bank=bank_b, point_value_cny=Decimal("0.003"))
    other = PointsProgramFactory(bank=bank_c, point_value_cny=Decimal("0.005"))
    merchant = MerchantFactory(sponsor_bank=bank_c, code="MSHOP1")
    holder = CardholderFactory()
    return {"a": bank_a, "b": bank_b, "c": bank_c, "src": src, "dst": dst, "other": other, "merchant": merchant,
            "holder": holder}  # fmt: skip


def post_sources(world: dict[str, Any]) -> dict[str, LedgerTransaction]:
    """An exchange A→B, a merchant-funded earn at A (the merchant sponsored by C), a redemption of A's points for
    C's benefit, and a third of the exchange reversed — all yesterday."""
    holder, src, dst = world["holder"], world["src"], world["dst"]
    txns: dict[str, Any] = {}
    txns["earn"] = dated(rewards.points_earn(cardholder_id=holder.pk, program=src, amount=3000, idempotency_key="e"))
    txns["exchange"] = dated(
        rewards.points_exchange(cardholder_id=holder.pk, from_program=src, to_program=dst, amount=1000,
                                idempotency_key="x")
    )  # fmt: skip
    txns["funded"] = dated(
        rewards.points_earn(
            cardholder_id=holder.pk,
            program=src,
            amount=333,
            idempotency_key="f",
            source=rewards.EarnSource.PROMOTION,
            funded_by=rewards.Party("merchant", world["merchant"].pk),
            metadata={"payment": "pi_test_funded"},
        )
    )
    txns["redeem"] = dated(
        rewards.points_redeem(
            cardholder_id=holder.pk,
            program=src,
            amount=101,
            idempotency_key="r",
            pays_to=rewards.Party("bank", world["c"].pk),
            metadata={"benefit_id": 42},
        )
    )
    txns["reversal"] = dated(rewards.transaction_reverse(transaction_id=txns["exchange"].pk, amount=333,
                                                         idempotency_key="xr"))  # fmt: skip
    return txns


def positions(run: ClearingRun) -> dict[str, ClearingPosition]:
    return {p.party_code: p for p in ClearingPosition.objects.filter(run=run)}


def test_a_day_nets_to_one_position_per_party_summing_to_zero(world: dict[str, Any]) -> None:
    txns = post_sources(world)
    run = services.clearing_run(YESTERDAY)
    assert run.status == ClearingRun.Status.INSTRUCTING
    by_party = positions(run)
    assert set(by_party) == {"AAA1", "BBB1", "CCC1", "~alliance"}
    assert sum(p.net for p in by_party.values()) == 0
    assert sum(p.net_minor for p in by_party.values()) == 0
    for p in by_party.values():
        assert p.net == p.receivable - p.payable
        assert p.rounding == p.net_minor * 100 - p.net
        assert abs(p.rounding) < 100
        assert p.net == sum(c.amount for c in p.components.all())
    # Bank A: owes 5.0000 for the exchange, gets back 1.6649 by the reversal, is owed 1.6650 by the merchant's funded
    # points and owes 101 × 0.005 = 0.5050 for C's benefit.
    assert by_party["AAA1"].net == -50000 + 16649 + 16650 - 5050
    # Bank C carries its merchant: −1.6650 for the funded points, +0.5050 for its benefit.
    assert by_party["CCC1"].net == -16650 + 5050
    kinds = {(c.position.party_code, c.kind, c.merchant_id) for c in ClearingComponent.objects.filter(run=run)}
    assert ("AAA1", "exchange_out", None) in kinds
    assert ("BBB1", "exchange_in", None) in kinds
    assert ("~alliance", "exchange_fee", None) in kinds
    assert ("CCC1", "funded_points", world["merchant"].pk) in kinds
    assert ("CCC1", "benefit_redemption", None) in kinds
    assert ("AAA1", "exchange_reversal", None) in kinds  # a reversal of an exchange is told apart
    assert run.transactions_count == 4  # the plain earn posts no obligation
    assert run.entries_count == sum(p.entries_count for p in by_party.values())
    instructions = {i.party_code: i for i in ClearingInstruction.objects.filter(run=run)}
    for code, position in by_party.items():
        if position.net_minor == 0:
            assert code not in instructions
        else:
            instruction = instructions[code]
            assert instruction.direction == ("pay" if position.net_minor < 0 else "receive")
            assert instruction.amount == abs(position.net_minor)
    assert txns["reversal"] is not None


def test_a_write_off_is_not_netted_and_leaves_the_day_balanced(world: dict[str, Any]) -> None:
    """A reconciliation write-off is the bank's own loss (loss against suspense), never an obligation to another
    member: the day with one still nets to zero, with the same positions as without it."""
    post_sources(world)
    dated(rewards.loss_post(bank=world["a"], units=12_300, idempotency_key="wo", actor=None, metadata={}))
    run = services.clearing_run(YESTERDAY)
    by_party = positions(run)
    assert sum(p.net for p in by_party.values()) == 0
    assert by_party["AAA1"].net == -50000 + 16649 + 16650 - 5050
    assert run.transactions_count == 4


def test_the_statement_traces_every_source_to_its_transaction(world: dict[str, Any]) -> None:
    txns = post_sources(world)
    run = services.clearing_run(YESTERDAY)
    by_party = positions(run)
    lines_a = selectors.statement_lines(by_party["AAA1"])
    assert sum(line.amount for line in lines_a) == by_party["AAA1"].net
    traced = {(line.transaction_id, line.component) for line in lines_a}
    assert (txns["exchange"].pk, "exchange_out") in traced
    assert (txns["funded"].pk, "funded_points") in traced
    assert (txns["redeem"].pk, "benefit_redemption") in traced
    assert (txns["reversal"].pk, "exchange_reversal") in traced
    funded = next(line for line in lines_a if line.transaction_id == txns["funded"].pk)
    assert (funded.payment, funded.counterparties) == ("pi_test_funded", "MSHOP1")
    lines_c = selectors.statement_lines(by_party["CCC1"])
    assert sum(line.amount for line in lines_c) == by_party["CCC1"].net
    carried = next(line for line in lines_c if line.transaction_id == txns["funded"].pk)
    assert (carried.merchant, carried.amount, carried.counterparties) == ("MSHOP1", -16650, "AAA1")
    redeemed = next(line for line in lines_c if line.transaction_id == txns["redeem"].pk)
    assert redeemed.benefit == "42"
    fee = selectors.statement_lines(by_party["~alliance"])
    assert {line.transaction_id for line in fee} == {txns["exchange"].pk, txns["reversal"].pk}
    # Keyset pages add up to the whole.
    paged = selectors.statement_lines(by_party["AAA1"], limit=2) + selectors.statement_lines(
        by_party["AAA1"], after=lines_a[1].entry_id
    )
    assert paged == lines_a


def test_a_tie_goes_to_the_lower_member_code(world: dict[str, Any]) -> None:
    # A and B each fund 1 point of C's programme (0.0050 CNY each): C +1 fen exactly, A and B −0.5 fen each.
    other = world["other"]
    for bank in ("a", "b"):
        funded(other, world[bank], 1, f"tie-{bank}")
    by_party = positions(services.clearing_run(YESTERDAY))
    assert {code: p.net for code, p in by_party.items()} == {"AAA1": -50, "BBB1": -50, "CCC1": 100}
    assert {code: p.net_minor for code, p in by_party.items()} == {"AAA1": 0, "BBB1": -1, "CCC1": 1}
    assert (by_party["AAA1"].rounding, by_party["BBB1"].rounding) == (50, -50)
    assert not ClearingInstruction.objects.filter(party_code="AAA1").exists()  # a zero position moves nothing


def test_only_the_day_is_netted_and_a_day_not_over_is_refused(world: dict[str, Any]) -> None:
    funded(world["other"], world["a"], 200, "d1", YESTERDAY - dt.timedelta(days=1), hour=23)
    funded(world["other"], world["a"], 100, "d2", YESTERDAY, hour=0)  # 00:00 Shanghai is yesterday's first moment
    run = services.clearing_run(YESTERDAY)
    assert positions(run)["CCC1"].net == 5000
    with pytest.raises(ValidationFailed):
        services.clearing_run(local_now().date())
    with pytest.raises(ValidationFailed):
        services.clearing_run(YESTERDAY, "XYZ")


def test_clearing_due_catches_up_every_day_once(world: dict[str, Any]) -> None:
    for n, day in enumerate([YESTERDAY - dt.timedelta(days=3), YESTERDAY]):
        funded(world["other"], world["a"], 10, f"c{n}", day)
    runs = services.clearing_due()
    assert sorted(run.business_day for run in runs) == [YESTERDAY - dt.timedelta(days=3), YESTERDAY]
    assert services.clearing_due() == []
    assert ClearingRun.objects.count() == 2


def test_a_rerun_of_a_finished_day_changes_nothing(world: dict[str, Any]) -> None:
    post_sources(world)
    first = services.clearing_run(YESTERDAY)
    before = (
        list(ClearingPosition.objects.values_list("pk", "net", "net_minor").order_by("pk")),
        list(ClearingInstruction.objects.values_list("pk", "reference", "amount").order_by("pk")),
        ClearingComponent.objects.count(),
    )
    again = services.clearing_run(YESTERDAY)
    assert (again.pk, again.status) == (first.pk, first.status)
    after = (
        list(ClearingPosition.objects.values_list("pk", "net", "net_minor").order_by("pk")),
        list(ClearingInstruction.objects.values_list("pk", "reference", "amount").order_by("pk")),
        ClearingComponent.objects.count(),
    )
    assert after == before


def test_a_run_resumes_from_the_stage_a_failure_left(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    post_sources(world)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("crash")

    # A failure while netting leaves nothing of it: the run is still computing, with no position.
    monkeypatch.setattr(clearing_module, "_round", boom)
    with pytest.raises(RuntimeError):
        services.clearing_run(YESTERDAY)
    run = ClearingRun.objects.get()
    assert run.status == ClearingRun.Status.COMPUTING
    assert not ClearingPosition.objects.exists()
    assert not ClearingComponent.objects.exists()
    monkeypatch.undo()
    # A failure between netting and instructing: netted, no instruction; the next run makes them.
    monkeypatch.setattr(clearing_module, "_instruct", boom)
    with pytest.raises(RuntimeError):
        services.clearing_run(YESTERDAY)
    run.refresh_from_db()
    assert run.status == ClearingRun.Status.NETTED
    netted = list(ClearingPosition.objects.values_list("pk", "net_minor").order_by("pk"))
    assert not ClearingInstruction.objects.exists()
    monkeypatch.undo()
    run = services.clearing_run(YESTERDAY)
    assert run.status == ClearingRun.Status.INSTRUCTING
    assert list(ClearingPosition.objects.values_list("pk", "net_minor").order_by("pk")) == netted
    assert ClearingInstruction.objects.count() == run.instructions_count == sum(1 for _, n in netted if n)


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_make_one_run() -> None:
    bank_a, bank_c = MemberBankFactory(code="AAA1"), MemberBankFactory(code="CCC1")
    other = PointsProgramFactory(bank=bank_c, point_value_cny=Decimal("0.005"))
    for n in range(5):
        funded(other, bank_a, 7 + n, f"p{n}")
    results = run_parallel(2, lambda i: services.clearing_run(YESTERDAY))
    assert all(isinstance(r, ClearingRun) or (isinstance(r, Conflict) and r.code == "job_running") for r in results)
    assert ClearingRun.objects.count() == 1
    assert ClearingPosition.objects.count() == 2
    assert sum(ClearingPosition.objects.values_list("net", flat=True)) == 0
    assert ClearingPosition.objects.get(party_code="CCC1").net == sum((7 + n) * 50 for n in range(5))
    # The refused one, run again, finds the day done.
    assert services.clearing_run(YESTERDAY).status == ClearingRun.Status.INSTRUCTING


# --- the admin -------------------------------------------------------------------------------------------------------


def login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_a_bank_sees_its_own_statement_only_and_downloads_it(world: dict[str, Any]) -> None:
    txns = post_sources(world)
    run = services.clearing_run(YESTERDAY)
    by_party = positions(run)
    own, other = by_party["CCC1"], by_party["AAA1"]
    operator = login(bank_operator(world["c"]))
    html = operator.get(f"/admin/alliance/clearingposition/{own.pk}/statement/")
    assert html.status_code == 200
    page = html.content.decode()
    assert "<script" not in page
    assert "@media print" in page
    for traced in (str(txns["funded"].pk), "MSHOP1", "-1.6650", str(txns["redeem"].pk)):
        assert traced in page
    csv = b"".join(operator.get(f"/admin/alliance/clearingposition/{own.pk}/statement.csv").streaming_content)
    text = csv.decode()
    assert f"line,{txns['funded'].pk},earn," in text
    assert "funded_points,MSHOP1" in text
    assert "-1.6650" in text
    assert f"line,{txns['redeem'].pk},spend," in text
    for url in (
        f"/admin/alliance/clearingposition/{other.pk}/statement/",
        f"/admin/alliance/clearingposition/{other.pk}/statement.csv",
        f"/admin/alliance/clearingposition/{other.pk}/change/",
        f"/admin/alliance/clearingposition/{by_party['~alliance'].pk}/statement/",
    ):
        assert operator.get(url).status_code == 404
    listed = operator.get("/admin/alliance/clearingposition/")
    assert {p.pk for p in listed.context["cl"].queryset} == {own.pk}
    assert operator.get(f"/admin/alliance/clearingrun/{run.pk}/change/").status_code in (403, 404)
    alliance = login(AllianceOperatorFactory())
    assert alliance.get(f"/admin/alliance/clearingposition/{other.pk}/statement/").status_code == 200
    assert alliance.get(f"/admin/alliance/clearingrun/{run.pk}/change/").status_code == 200


def test_the_statement_of_a_day_whose_ledger_month_was_archived_reads_the_archives(world: dict[str, Any]) -> None:
    """The run's positions stay when the month of the ledger they net is archived, and so do the lines that explain
    them: the statement reads the archived entries and transactions (what a reversal reverses among them)."""
    from django.db import connection

    from core.partitions import month_start, partition_detach, partitions_create

    txns = post_sources(world)
    run = services.clearing_run(YESTERDAY)
    by_party = positions(run)
    before = {code: selectors.statement_lines(position) for code, position in by_party.items()}
    month = month_start(YESTERDAY)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no table is altered with key checks pending
    for table in ("rewards_entry", "rewards_ledgertransaction"):
        partitions_create(table, month, 1)
    assert partition_detach("rewards_entry", month)
    assert partition_detach("rewards_ledgertransaction", month)
    assert not LedgerTransaction.objects.filter(pk=txns["reversal"].pk).exists()

    after = {code: selectors.statement_lines(position) for code, position in by_party.items()}
    assert after == before
    assert (txns["reversal"].pk, "exchange_reversal") in {(x.transaction_id, x.component) for x in after["AAA1"]}
    assert sum(line.amount for line in after["AAA1"]) == by_party["AAA1"].net
