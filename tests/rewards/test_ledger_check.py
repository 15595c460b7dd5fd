"""ledger_check: clean on a healthy ledger, names the transaction behind a raw edit, and catches a rewrite that
recomputes every hash in the database against the exported, signed heads."""

from __future__ import annotations

import hashlib

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from rewards import sealing
from rewards import services as s
from rewards.models import Entry, LedgerTransaction, Seal
from rewards.sealing import canonical_lines, head_hash, seal_pending, seal_rows
from tests.factories import CardholderFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sealed_ledger():
    program, holder = PointsProgramFactory(), CardholderFactory()
    earn = s.points_earn(cardholder_id=holder.pk, program=program, amount=500, idempotency_key="e")
    s.points_redeem(cardholder_id=holder.pk, program=program, amount=120, idempotency_key="r")
    s.hold_create(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="h")
    assert seal_pending(batch_size=1) == 2
    return earn


def run_check() -> tuple[str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    call_command("ledger_check", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_clean_ledger_passes_and_says_what_it_checked(sealed_ledger) -> None:
    out, err = run_check()
    assert "zero-sum per transaction and unit: 2 transactions, 4 entries" in out
    assert "seal chain: 2 seals against 2 exported signed heads" in out
    assert "ledger_check: clean" in out
    assert err == ""


def test_raw_edit_of_an_entry_names_the_transaction(sealed_ledger) -> None:
    entry = Entry.objects.filter(transaction=sealed_ledger, amount__gt=0).get()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rewards_entry SET amount = amount + 1000 WHERE id = %s", [entry.pk])
    import io

    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("ledger_check", stdout=io.StringIO(), stderr=err)
    text = err.getvalue()
    assert f"zero-sum: transaction {sealed_ledger.pk} sums to 1000" in text
    assert f"cached balance: account {entry.account_id}" in text
    first_seal = Seal.objects.order_by("id").first()
    assert f"seal chain: seal {first_seal.pk} (transactions" in text


def test_rewriting_history_and_recomputing_every_hash_is_still_caught(sealed_ledger) -> None:
    # A consistent forgery: move 100 points from the bank's side to the wallet inside the sealed earn, fix the cached
    # balances and the lot, then recompute every seal's content hash, chain hash (the signature cannot be redone).
    wallet_entry = Entry.objects.filter(transaction=sealed_ledger, amount__gt=0).get()
    bank_entry = Entry.objects.filter(transaction=sealed_ledger, amount__lt=0).get()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE rewards_entry SET amount = amount + 100, balance_after = balance_after + 100 WHERE id = %s",
            [wallet_entry.pk],
        )
        cursor.execute(
            "UPDATE rewards_entry SET amount = amount - 100, balance_after = balance_after - 100 WHERE id = %s",
            [bank_entry.pk],
        )
        cursor.execute(
            "UPDATE rewards_entry SET balance_after = balance_after + 100 WHERE account_id = %s AND id > %s",
            [wallet_entry.account_id, wallet_entry.pk],
        )
        cursor.execute("UPDATE rewards_account SET posted = posted + 100 WHERE id = %s", [wallet_entry.account_id])
        cursor.execute("UPDATE rewards_account SET posted = posted - 100 WHERE id = %s", [bank_entry.account_id])
        cursor.execute(
            "UPDATE rewards_lot SET amount = amount + 100, remaining = remaining + 100 WHERE earned_by_id = %s",
            [sealed_ledger.pk],
        )
    previous = "0" * 64
    for seal in Seal.objects.order_by("id"):
        rows = seal_rows(seal.pk)
        for txn_id, digest in rows:  # the per-transaction digests too, so that only the signatures can tell
            LedgerTransaction.objects.filter(pk=txn_id).update(seal_digest=digest)
        content = hashlib.sha256(canonical_lines(rows)).hexdigest()
        new_hash = head_hash(
            seal_id=seal.pk,
            previous=previous,
            content=content,
            transactions=seal.transaction_count,
            entries=seal.entry_count,
            first=seal.first_transaction_id,
            last=seal.last_transaction_id,
        )
        Seal.objects.filter(pk=seal.pk).update(previous_hash=previous, content_hash=content, hash=new_hash)
        previous = new_hash
    from rewards.checks import ledger_verify

    report = ledger_verify()
    assert all(v.startswith("seal chain:") for v in report.violations), report.violations
    assert not any("transaction" in v for v in report.violations), report.violations
    first, second = Seal.objects.order_by("id").values_list("id", flat=True)
    assert f"seal chain: seal {first} signature is not valid for its hash" in report.violations
    assert f"seal chain: seal {first} differs from its exported, signed head" in report.violations
    assert f"seal chain: seal {second} differs from its exported, signed head" in report.violations


def test_deleting_a_sealed_transaction_is_caught(sealed_ledger) -> None:
    from rewards.checks import ledger_verify

    LedgerTransaction.objects.filter(pk=sealed_ledger.pk).update(seal=None)
    report = ledger_verify()
    first = Seal.objects.order_by("id").first()
    assert any(f"seal {first.pk} (transactions" in v for v in report.violations)


def test_seal_jobs_are_scheduled_and_export_is_append_only(sealed_ledger) -> None:
    from django_celery_beat.models import PeriodicTask

    assert set(PeriodicTask.objects.filter(task__startswith="rewards.").values_list("task", flat=True)) == {
        "rewards.ledger_seal",
        "rewards.lots_expire",
        "rewards.holds_expire",
        "rewards.vouchers_expire",
    }
    from rewards.tasks import ledger_seal

    assert ledger_seal.delay().get() == {"seals": 0}
    storage = sealing.head_storage()
    names = sorted(storage.listdir("")[1])
    assert names == [sealing.head_name(seal.pk) for seal in Seal.objects.order_by("id")]
    assert len(names) == 2


def test_an_exported_head_is_never_replaced(sealed_ledger) -> None:
    """One object per seal, written once: exporting again — after the seal's row was rewritten, say — keeps the head
    first written, and the check holds the database to that one."""
    seal = Seal.objects.order_by("id").first()
    first = sealing.exported_heads()[seal.pk]
    Seal.objects.filter(pk=seal.pk).update(hash="f" * 64)
    sealing._export(Seal.objects.filter(pk=seal.pk))
    sealing.export_missing_heads()
    assert sealing.exported_heads()[seal.pk] == first
    assert sorted(sealing.head_storage().listdir("")[1]) == [
        sealing.head_name(pk) for pk in Seal.objects.order_by("id").values_list("pk", flat=True)
    ]
    from rewards.checks import ledger_verify

    assert any(f"seal {seal.pk}" in v for v in ledger_verify().violations)


EDITS_AFTER_SEALING = {
    # the base of refund reversals
    "transaction points": "UPDATE rewards_ledgertransaction SET points = points - 100 WHERE id = %(earn)s",
    # whose wallet a reversal hits
    "transaction metadata": (
        "UPDATE rewards_ledgertransaction SET metadata = jsonb_set(metadata, '{cardholder_id}', '0')"
        " WHERE id = %(earn)s"
    ),
    "transaction kind": "UPDATE rewards_ledgertransaction SET kind = 'adjust' WHERE id = %(earn)s",
    # with its key's row, which must name it (on Citus, where that key is dropped, the key's row would not move it)
    "transaction time": (
        "WITH key AS (UPDATE rewards_ledgerkey SET transaction_created_at = transaction_created_at - interval '1 day'"
        " WHERE transaction_id = %(earn)s)"
        " UPDATE rewards_ledgertransaction SET created_at = created_at - interval '1 day' WHERE id = %(earn)s"
    ),
    # an entry that is not its account's last: no balance check sees it
    "entry balance after": (
        "UPDATE rewards_entry SET balance_after = balance_after + 1 WHERE transaction_id = %(earn)s AND amount > 0"
    ),
    "lot expiry": "UPDATE rewards_lot SET expires_on = expires_on + 365 WHERE earned_by_id = %(earn)s",
    "lot amount": "UPDATE rewards_lot SET amount = amount + 1 WHERE earned_by_id = %(earn)s",
}


@pytest.mark.parametrize("edit", sorted(EDITS_AFTER_SEALING))
def test_the_seal_covers_every_field_that_moves_value_and_names_the_transaction(sealed_ledger, edit) -> None:
    from rewards.checks import ledger_verify

    assert ledger_verify().violations == []
    with connection.cursor() as cursor:
        cursor.execute(EDITS_AFTER_SEALING[edit], {"earn": sealed_ledger.pk})
        assert cursor.rowcount == 1
    violations = ledger_verify().violations
    seal = Seal.objects.get(transactions=sealed_ledger)
    assert (
        f"seal chain: transaction {sealed_ledger.pk} (in seal {seal.pk}) was changed after it was sealed: its rows no"
        " longer hash to its sealed digest"
    ) in violations
    assert any(
        f"seal {seal.pk} (transactions" in v and f"transaction {sealed_ledger.pk} changed" in v for v in violations
    )


def test_a_spends_lot_movements_are_sealed(sealed_ledger) -> None:
    from rewards.checks import ledger_verify

    redeem = LedgerTransaction.objects.get(idempotency_key="r")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rewards_lotmovement SET amount = amount - 1 WHERE transaction_id = %s", [redeem.pk])
    assert any(f"transaction {redeem.pk} (in seal" in v for v in ledger_verify().violations)


def test_seals_made_under_version_1_still_verify() -> None:
    """A seal made before version 2 (entry lines only) keeps verifying as it was made, and the chain goes on."""
    from rewards.checks import ledger_verify
    from rewards.sealing import GENESIS, export_missing_heads, sign

    program, holder = PointsProgramFactory(), CardholderFactory()
    earn = s.points_earn(cardholder_id=holder.pk, program=program, amount=500, idempotency_key="e")
    lines = [
        (earn.pk, earn.kind, earn.idempotency_key, e.pk, e.account_id, e.unit, e.amount)
        for e in Entry.objects.filter(transaction=earn).order_by("id")
    ]
    content = hashlib.sha256(canonical_lines(lines)).hexdigest()
    old = Seal.objects.create(
        version=1,
        previous_hash=GENESIS,
        content_hash=content,
        hash="pending",
        signature="",
        transaction_count=1,
        entry_count=len(lines),
        first_transaction_id=earn.pk,
        last_transaction_id=earn.pk,
    )
    old.hash = head_hash(
        seal_id=old.pk,
        previous=GENESIS,
        content=content,
        transactions=1,
        entries=2,
        first=earn.pk,
        last=earn.pk,
        version=1,
    )
    old.signature = sign(old.hash)
    old.save()
    LedgerTransaction.objects.filter(pk=earn.pk).update(seal=old)
    export_missing_heads()
    s.points_redeem(cardholder_id=holder.pk, program=program, amount=20, idempotency_key="r")
    assert seal_pending() == 1
    assert Seal.objects.order_by("-id").first().version == 2
    assert ledger_verify().violations == []
    Entry.objects.filter(transaction=earn, amount__gt=0).update(amount=501)
    assert any(f"seal {old.pk} (transactions" in v for v in ledger_verify().violations)


def _hide_entry(txn: LedgerTransaction) -> tuple[object, ...]:
    """Removes one of `txn`'s entries, as a seal on Citus may find it while the entry's worker has not committed yet
    (`COMMIT PREPARED` comes after the coordinator's commit); returns the row, to put it back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM rewards_entry WHERE id = (SELECT MAX(id) FROM rewards_entry WHERE transaction_id = %s)"
            " RETURNING id, transaction_id, account_id, spread, unit, amount, balance_after, created_at",
            [txn.pk],
        )
        return cursor.fetchone()


def _show_entry(row: tuple[object, ...]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rewards_entry"
            " (id, transaction_id, account_id, spread, unit, amount, balance_after, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            row,
        )


def test_the_seal_stops_before_a_transaction_whose_entries_are_not_all_visible_and_seals_it_once_they_are() -> None:
    from rewards.checks import ledger_verify

    program, holder = PointsProgramFactory(), CardholderFactory()
    first, second, third = (
        s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key=key)
        for key in ("e1", "e2", "e3")
    )
    assert second.entry_count == 2
    hidden = _hide_entry(second)
    assert seal_pending() == 1
    seal = Seal.objects.get()
    assert (seal.first_transaction_id, seal.last_transaction_id, seal.transaction_count) == (first.pk, first.pk, 1)
    assert seal.entry_count == 2
    assert list(LedgerTransaction.objects.filter(seal__isnull=True).order_by("id").values_list("id", flat=True)) == [
        second.pk,
        third.pk,
    ]
    assert seal_pending() == 0  # still incomplete: nothing sealed, the chain waits
    _show_entry(hidden)
    assert seal_pending() == 1
    later = Seal.objects.order_by("-id").first()
    assert (later.first_transaction_id, later.last_transaction_id, later.entry_count) == (second.pk, third.pk, 4)
    assert ledger_verify().violations == []


def test_nothing_is_sealed_while_the_first_transaction_waits_for_its_entries() -> None:
    from rewards.checks import ledger_verify

    program, holder = PointsProgramFactory(), CardholderFactory()
    first = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e1")
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e2")
    LedgerTransaction.objects.filter(pk=first.pk).update(entry_count=3)  # a third entry still to commit
    assert seal_pending() == 0
    assert not Seal.objects.exists()
    assert ledger_verify().violations == [f"entry count: transaction {first.pk} was posted with 3 entries but has 2"]
    LedgerTransaction.objects.filter(pk=first.pk).update(entry_count=2)
    assert seal_pending() == 1
    assert Seal.objects.get().transaction_count == 2


def test_an_entry_removed_from_or_added_to_a_transaction_is_reported(sealed_ledger) -> None:
    out, _err = run_check()
    assert "each transaction has the entries it was posted with" in out
    row = _hide_entry(sealed_ledger)
    with pytest.raises(CommandError):
        run_check()
    from rewards.checks import ledger_verify

    violations = ledger_verify().violations
    assert f"entry count: transaction {sealed_ledger.pk} was posted with 2 entries but has 1" in violations
    _show_entry(row)
    with connection.cursor() as cursor:  # a pair that sums to zero and moves no balance
        for amount in (5, -5):
            cursor.execute(
                "INSERT INTO rewards_entry"
                " (transaction_id, account_id, spread, unit, amount, balance_after, created_at)"
                " SELECT transaction_id, account_id, spread, unit, %s, balance_after, created_at FROM rewards_entry"
                " WHERE id = %s",
                [amount, row[0]],
            )
    assert f"entry count: transaction {sealed_ledger.pk} was posted with 2 entries but has 4" in (
        ledger_verify(seals=False).violations
    )
