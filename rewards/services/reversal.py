"""Reversing an earn, a spend (a posted hold included), an adjustment or an exchange, wholly or in part.

Reversals are cumulative: what is reversed so far never exceeds what the transaction posted, and every other amount of
the transaction (an exchange's target points, CNY obligations, the alliance's fee) follows its principal by the same
floor rule, so partial reversals always add up exactly to the whole reversal.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext as _

from core.calendar import SHANGHAI
from core.errors import Conflict, NotFound, ValidationFailed
from core.money import proportional_floor
from members.models import PointsProgram

from ..models import Account, Entry, LedgerKey, LedgerTransaction, Lot, LotMovement, OwnerKind, Purpose
from .accounts import CNY, AccountRef, bank_ref, debt_ref, wallet_ref
from .lots import today
from .posting import Actor, Kind, Posting, begin, finish, keyed, request_hash, require_positive, retry_on_conflict


def _refuse_archived(transaction_id: int) -> None:
    """Refuses (`transaction_archived`) to reverse a transaction whose month went to an archive: its key's row stays
    and names it. The job keeps a month while what it holds may be reversed (a refund's window, a voucher that may be
    cancelled), so only a request from outside those rules gets here."""
    taken = LedgerKey.objects.filter(transaction_id=transaction_id).values_list("transaction_created_at", flat=True)
    made = taken.first()
    if made is not None:
        raise Conflict(
            _("This ledger transaction was made in %(month)s, a month that has been archived: it cannot be reversed.")
            % {"month": f"{made.astimezone(SHANGHAI):%Y-%m}"},
            code="transaction_archived",
            param="transaction",
        )


@retry_on_conflict
def transaction_reverse(
    *,
    transaction_id: int,
    idempotency_key: str,
    transaction_created_at: datetime | None = None,
    amount: int | None = None,
    refunded_total: int | None = None,
    captured_total: int | None = None,
    actor: Actor = None,
    reason: str = "",
) -> LedgerTransaction | None:
    """Reverses an earn, a spend (including a posted hold), an adjustment or an exchange, wholly or in part, at most
    up to what it posted, cumulatively. Give `amount` points of the transaction's principal (for an exchange: its
    source points), or the refund so far: reversed so far = floor(points × refunded_total / captured_total). The
    transaction's other amounts (an exchange's target points, CNY obligations, the alliance fee) follow by the same
    cumulative rule, so partial reversals always add up exactly to the whole reversal. Returns None when the refund so
    far rounds to nothing more to reverse. With `transaction_created_at` (the transaction's time, which every row that
    refers to it carries) the transaction is read in its month's partition only."""
    if (amount is None) == (refunded_total is None or captured_total is None):
        raise ValidationFailed(_("Give either an amount or refunded and captured totals."), param="amount")
    if amount is not None:
        require_positive(amount)
    elif (
        captured_total is not None
        and refunded_total is not None
        and (captured_total <= 0 or refunded_total < 0 or refunded_total > captured_total)
    ):
        raise ValidationFailed(_("The refunded total must be between 0 and the captured total."), param="amount")
    if transaction_created_at is not None:
        original = LedgerTransaction.objects.one(transaction_id, transaction_created_at).first()
    else:  # by id alone: every month's partition is probed (an operator's or a client's request by id)
        original = LedgerTransaction.objects.filter(pk=transaction_id).first()
    if original is None:
        _refuse_archived(transaction_id)
        raise NotFound(_("No such ledger transaction."), param="transaction")
    digest = request_hash(
        op="reverse", txn=transaction_id, amount=amount, refunded=refunded_total, captured=captured_total
    )
    return keyed(
        LedgerTransaction,
        idempotency_key,
        digest,
        lambda: _reverse_locked(
            original, idempotency_key, digest, amount, refunded_total, captured_total, actor, reason
        ),
    )


def _reverse_locked(
    original: LedgerTransaction,
    key: str,
    digest: str,
    amount: int | None,
    refunded_total: int | None,
    captured_total: int | None,
    actor: Actor,
    reason: str,
) -> LedgerTransaction | None:
    meta = original.metadata
    direction = meta.get("direction", 1)
    earn_like = original.kind == Kind.EARN or (original.kind == Kind.ADJUST and direction > 0)
    spend_like = original.kind in (Kind.SPEND, Kind.HOLD_POST) or (original.kind == Kind.ADJUST and direction < 0)
    exchange = original.kind == Kind.EXCHANGE
    if not (earn_like or spend_like or exchange):
        raise ValidationFailed(_("This kind of transaction cannot be reversed."), param="transaction")
    program = PointsProgram.objects.get(pk=meta["program_id"])
    cardholder_id = int(meta["cardholder_id"])
    wallet, debt = wallet_ref(cardholder_id, program), debt_ref(cardholder_id, program)
    breakage = bank_ref(program, Purpose.BREAKAGE, cardholder_id)
    by_account: dict[int, int] = defaultdict(int)
    # Named by the transaction's time too: the entries sit in that month's partition, the only one read.
    original_entries = Entry.objects.filter(transaction=original, created_at=original.created_at)
    for account_id, value in original_entries.values_list("account_id", "amount"):
        by_account[account_id] += value
    refs = [wallet, debt, breakage]
    metadata: dict[str, Any] = {
        "cardholder_id": cardholder_id,
        "program_id": program.pk,
        "reverses_kind": original.kind,
        "reason": reason,
    }
    target: tuple[PointsProgram, AccountRef, AccountRef] | None = None
    if exchange:
        dst_program = PointsProgram.objects.get(pk=meta["to_program_id"])
        # The target wallet has no entry in the exchange when every point paid off a debt, so it is named here.
        target = (dst_program, wallet_ref(cardholder_id, dst_program), debt_ref(cardholder_id, dst_program))
        refs += target[1:]
        metadata["to_program_id"] = dst_program.pk
    posting = begin(
        kind=Kind.REVERSAL,
        key=key,
        digest=digest,
        refs=refs,
        account_ids=by_account,
        actor=actor,
        metadata=metadata,
        reverses=original,
    )
    own_accounts = [posting.accounts[account_id] for account_id in sorted(by_account)]
    locked_original = LedgerTransaction.objects.one(original.pk, original.created_at).select_for_update().get()
    points, done_before = locked_original.points, locked_original.reversed_points
    if amount is None:
        assert refunded_total is not None
        assert captured_total is not None
        delta = proportional_floor(points, refunded_total, captured_total) - done_before
        if delta <= 0:
            transaction.set_rollback(True)
            return None
    else:
        delta = amount
    if done_before + delta > points:
        raise ValidationFailed(
            _("Only %(left)d points of this transaction are left to reverse.") % {"left": points - done_before},
            param="amount",
        )
    done_after = done_before + delta
    posting.txn.points = delta
    bank_side = next(a for a in own_accounts if a.owner_kind == OwnerKind.BANK and a.unit == program.unit_code)
    if earn_like:
        _unearn(posting, original, posting.account(wallet), posting.account(debt), delta)
        posting.leg(bank_side, delta)
    else:  # a spend, or the source side of an exchange
        _unspend(posting, original, posting.account(wallet), posting.account(breakage), delta)
        posting.leg(bank_side, -delta)
    if target is not None:
        dst_program, dst_wallet, dst_debt = target
        points_out = int(meta["points_out"])
        taken_back = proportional_floor(points_out, done_after, points) - proportional_floor(
            points_out, done_before, points
        )
        if taken_back:
            dst_issuance = next(
                a for a in own_accounts if a.owner_kind == OwnerKind.BANK and a.unit == dst_program.unit_code
            )
            _unearn(posting, original, posting.account(dst_wallet), posting.account(dst_debt), taken_back)
            posting.leg(dst_issuance, taken_back)
        posting.txn.metadata["points_out"] = taken_back
    _reverse_cny(posting, own_accounts, by_account, points, done_before, done_after)
    posting.txn.save(update_fields=["points", "metadata"])
    LedgerTransaction.objects.one(original.pk, original.created_at).update(reversed_points=done_after)
    return finish(posting)


def _reverse_cny(
    posting: Posting, own_accounts: list[Account], by_account: dict[int, int], points: int, before: int, after: int
) -> None:
    """Reverses the transaction's CNY legs so far as `after` of its `points` are reversed: each party that was paid
    (the receiving bank, the alliance's fee) hands back floor(its amount × after / points) cumulatively, and the party
    that paid gets the sum. So every reversal balances, and once all points are reversed every party is back exactly
    where it started, however the reversal was split."""
    payers: list[Account] = []
    handed_back = 0
    for account in own_accounts:
        if account.unit != CNY:
            continue
        total = by_account[account.pk]
        if total < 0:
            payers.append(account)
            continue
        step = proportional_floor(total, after, points) - proportional_floor(total, before, points)
        posting.leg(account, -step)
        handed_back += step
    if handed_back:
        if len(payers) != 1:
            raise AssertionError(f"transaction {posting.txn.pk}: expected one paying party, found {len(payers)}")
        posting.leg(payers[0], handed_back)


def _unearn(posting: Posting, original: LedgerTransaction, wallet: Account, debt: Account, delta: int) -> None:
    """Takes back earned points: from the lot they formed while it has them, the rest becomes a points debt."""
    lot = Lot.objects.filter(earned_by=original, account_id=wallet.pk).first()
    from_lot = min(delta, lot.remaining if lot else 0, max(wallet.available, 0))
    if from_lot and lot is not None:
        Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - from_lot)
        LotMovement.objects.create(
            transaction=posting.txn, transaction_created_at=posting.txn.created_at, lot=lot, amount=-from_lot
        )
        posting.leg(wallet, -from_lot)
    posting.leg(debt, -(delta - from_lot))


def _unspend(posting: Posting, original: LedgerTransaction, wallet: Account, breakage: Account, delta: int) -> None:
    """Returns spent points to the lots they came from (latest expiry first); a lot that expired since expires them
    at once (named in the reversal's metadata `expired_lots`)."""
    taken: dict[int, int] = defaultdict(int)
    for lot_id, value in LotMovement.objects.filter(transaction=original).values_list("lot_id", "amount"):
        taken[lot_id] -= value
    earlier = LedgerTransaction.objects.filter(reverses=original).exclude(pk=posting.txn.pk)
    # Only the points earlier reversals returned to these lots: an exchange's reversal also takes target points
    # from the target lot (a negative movement), which is not a lot this spend took from.
    for lot_id, value in LotMovement.objects.filter(transaction__in=earlier, amount__gt=0).values_list(
        "lot_id", "amount"
    ):
        taken[lot_id] -= value
    for previous_metadata in earlier.values_list("metadata", flat=True):
        for lot_id, value in (previous_metadata.get("expired_lots") or {}).items():
            taken[int(lot_id)] -= value
    lots = list(Lot.objects.filter(pk__in=list(taken)))
    need = delta
    day = today()
    expired_now: dict[str, int] = {}
    movements: list[LotMovement] = []
    back_to_wallet = 0
    for lot in sorted(lots, key=lambda item: (item.expires_on, item.pk), reverse=True):
        if need == 0:
            break
        give = min(need, taken[lot.pk])
        if give <= 0:
            continue
        need -= give
        if lot.expires_on < day:
            expired_now[str(lot.pk)] = give
            continue
        Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") + give)
        movements.append(
            LotMovement(transaction=posting.txn, transaction_created_at=posting.txn.created_at, lot=lot, amount=give)
        )
        back_to_wallet += give
    if need:
        raise AssertionError(f"transaction {original.pk}: spent lots do not cover the reversal (short by {need})")
    LotMovement.objects.bulk_create(movements)
    posting.leg(wallet, back_to_wallet)
    posting.leg(breakage, delta - back_to_wallet)
    if expired_now:
        posting.txn.metadata["expired_lots"] = expired_now
