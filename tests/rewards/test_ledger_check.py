"""ledger_check: clean on a healthy ledger, names the transaction behind a raw edit, and catches a rewrite that
recomputes every hash in the database against the exported, signed heads."""

from __future__ import annotations

import hashlib

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

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
        content = hashlib.sha256(canonical_lines(seal_rows(seal.pk))).hexdigest()
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


def test_seal_jobs_are_scheduled_and_export_is_append_only(sealed_ledger, settings) -> None:
    from django_celery_beat.models import PeriodicTask

    assert set(PeriodicTask.objects.filter(task__startswith="rewards.").values_list("task", flat=True)) == {
        "rewards.ledger_seal",
        "rewards.lots_expire",
        "rewards.holds_expire",
    }
    from rewards.tasks import ledger_seal

    assert ledger_seal.delay().get() == {"seals": 0}
    with open(settings.LEDGER_SEAL_EXPORT) as exported:
        assert len(exported.read().splitlines()) == 2
