"""The points ledger's writes. Other apps post points only through these functions.

Every posting: (1) an idempotency check (a replay returns the first transaction, the same key with other parameters
is an `IdempotencyConflict`); (2) the transaction row; (3) row locks on every account it touches in one statement,
ordered by id, then on holds, the reversed transaction and lots (always in that order, so postings never deadlock on
each other); (4) the entries, zero-sum per unit, each carrying the account's running balance. Deadlocks and
serialization failures are retried from the start; `InsufficientFunds` is raised only for a real shortfall, before
anything is written. See docs/ledger.md.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.calendar import SHANGHAI
from core.errors import Conflict, IdempotencyConflict, InsufficientFunds, NotFound, PermissionDenied, ValidationFailed
from core.money import proportional_floor
from members.models import PointsProgram

from .models import (
    CURRENCY_SCALE,
    Account,
    AdjustmentRequest,
    Entry,
    Hold,
    LedgerTransaction,
    Lot,
    LotMovement,
    OwnerKind,
    Purpose,
)

P = ParamSpec("P")
R = TypeVar("R")
Actor = AbstractBaseUser | AnonymousUser | None
Kind = LedgerTransaction.Kind
CNY = "CNY"
ALLIANCE_ID = 0
_RETRYABLE_PGCODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_MAX_ATTEMPTS = 8


# --- helpers ------------------------------------------------------------------------------------------------------


def retry_on_conflict(func: Callable[P, R]) -> Callable[P, R]:
    """Runs `func` again after a deadlock or serialization failure (only when it owns the outermost transaction)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if connection.in_atomic_block:
            return func(*args, **kwargs)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                code = getattr(exc.__cause__, "pgcode", None)
                if code not in _RETRYABLE_PGCODES or attempt == _MAX_ATTEMPTS - 1:
                    raise
                time.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper


def request_hash(**params: Any) -> str:
    canonical = json.dumps(params, sort_keys=True, cls=DjangoJSONEncoder, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def cny_units(amount: Decimal, rounding: str = ROUND_HALF_UP) -> int:
    """A CNY amount as integer ten-thousandths (the ledger's currency unit), rounded once with `rounding`."""
    return int((amount * CURRENCY_SCALE).to_integral_value(rounding=rounding))


def points_value_units(points: int, program: PointsProgram, rounding: str = ROUND_HALF_UP) -> int:
    return cny_units(Decimal(points) * program.point_value_cny, rounding)


def _add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def lot_expiry(program: PointsProgram, earned_on: dt.date) -> dt.date:
    """The last day the points are valid, from the program's policy."""
    if program.expiry_policy == PointsProgram.ExpiryPolicy.MONTHS_AFTER_EARNING:
        return _add_months(earned_on, program.expiry_period)
    return dt.date(earned_on.year + program.expiry_period, 12, 31)


def today() -> dt.date:
    return timezone.now().astimezone(SHANGHAI).date()


def _actor_fields(actor: Actor) -> dict[str, Any]:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return {"actor": actor, "actor_label": actor.get_username()}
    return {"actor": None, "actor_label": "system"}


def _shard_for(key: int) -> int:
    return key % max(1, settings.LEDGER_BANK_SHARDS)


# --- accounts -----------------------------------------------------------------------------------------------------


def account_get_or_create(
    *,
    owner_kind: str,
    owner_id: int,
    purpose: str,
    unit: str,
    program: PointsProgram | None = None,
    bank_id: int | None = None,
    shard: int = 0,
) -> Account:
    """Accounts are created on first use; only a cardholder's points wallet may not go negative."""
    may_go_negative = purpose not in (Purpose.POINTS,)
    account, _created = Account.objects.get_or_create(
        owner_kind=owner_kind,
        owner_id=owner_id,
        purpose=purpose,
        unit=unit,
        shard=shard,
        defaults={"program": program, "bank_id": bank_id, "may_go_negative": may_go_negative},
    )
    return account


def wallet_account(cardholder_id: int, program: PointsProgram) -> Account:
    return account_get_or_create(
        owner_kind=OwnerKind.CARDHOLDER,
        owner_id=cardholder_id,
        purpose=Purpose.POINTS,
        unit=program.unit_code,
        program=program,
        bank_id=program.bank_id,
    )


def debt_account(cardholder_id: int, program: PointsProgram) -> Account:
    return account_get_or_create(
        owner_kind=OwnerKind.CARDHOLDER,
        owner_id=cardholder_id,
        purpose=Purpose.DEBT,
        unit=program.unit_code,
        program=program,
        bank_id=program.bank_id,
    )


def bank_points_account(program: PointsProgram, purpose: str, spread_key: int) -> Account:
    """A bank-side sub-account of the program; `spread_key` (the cardholder) picks the shard."""
    return account_get_or_create(
        owner_kind=OwnerKind.BANK,
        owner_id=program.bank_id,
        purpose=purpose,
        unit=program.unit_code,
        program=program,
        bank_id=program.bank_id,
        shard=_shard_for(spread_key),
    )


def clearing_account(owner_kind: str, owner_id: int) -> Account:
    """A party's CNY clearing account (bank, merchant) or the alliance's fee account."""
    if owner_kind == OwnerKind.ALLIANCE:
        return account_get_or_create(owner_kind=owner_kind, owner_id=ALLIANCE_ID, purpose=Purpose.FEES, unit=CNY)
    bank_id = owner_id if owner_kind == OwnerKind.BANK else None
    return account_get_or_create(
        owner_kind=owner_kind, owner_id=owner_id, purpose=Purpose.CLEARING, unit=CNY, bank_id=bank_id
    )


# --- the posting core ---------------------------------------------------------------------------------------------


@dataclass
class Posting:
    """A transaction being built under its locks."""

    txn: LedgerTransaction
    accounts: dict[int, Account]
    legs: list[tuple[int, int]]
    held_changes: dict[int, int]

    def leg(self, account: Account, amount: int) -> None:
        if amount:
            self.legs.append((account.pk, amount))

    def acc(self, account: Account) -> Account:
        """The locked copy (current balances) of `account`."""
        return self.accounts[account.pk]


def _key_reused() -> IdempotencyConflict:
    return IdempotencyConflict(
        _("This idempotency key was already used with different parameters."), param="idempotency_key"
    )


def _replay(model: type[LedgerTransaction] | type[Hold], key: str, digest: str) -> Any:
    existing = model.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.request_hash != digest:
        raise _key_reused()
    return existing


def _lock_accounts(accounts: Sequence[Account]) -> dict[int, Account]:
    ids = sorted({a.pk for a in accounts})
    locked = {a.pk: a for a in Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    return locked


def _begin(
    *,
    kind: str,
    key: str,
    digest: str,
    accounts: Sequence[Account],
    actor: Actor,
    metadata: dict[str, Any],
    points: int = 0,
    reverses: LedgerTransaction | None = None,
    rate: Decimal | None = None,
) -> Posting | LedgerTransaction:
    """Returns the first transaction on a replay, else a Posting with the accounts locked."""
    if not key or len(key) > 200:
        raise ValidationFailed(_("An idempotency key of 1 to 200 characters is required."), param="idempotency_key")
    existing = _replay(LedgerTransaction, key, digest)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            txn = LedgerTransaction.objects.create(
                kind=kind,
                idempotency_key=key,
                request_hash=digest,
                points=points,
                reverses=reverses,
                rate=rate,
                metadata=metadata,
                **_actor_fields(actor),
            )
    except IntegrityError:
        # Another request with this key committed first.
        existing = _replay(LedgerTransaction, key, digest)
        if existing is None:
            raise
        return existing
    return Posting(txn=txn, accounts=_lock_accounts(accounts), legs=[], held_changes={})


def _finish(posting: Posting) -> LedgerTransaction:
    """Checks zero-sum and the balance rules, then writes balances and entries."""
    totals: dict[str, int] = defaultdict(int)
    per_account: dict[int, int] = defaultdict(int)
    for account_id, amount in posting.legs:
        totals[posting.accounts[account_id].unit] += amount
        per_account[account_id] += amount
    unbalanced = {unit: total for unit, total in totals.items() if total}
    if unbalanced:
        raise AssertionError(f"ledger transaction does not balance: {unbalanced}")
    entries: list[Entry] = []
    running: dict[int, int] = {}
    for account_id in sorted(set(per_account) | set(posting.held_changes)):
        account = posting.accounts[account_id]
        new_posted = account.posted + per_account.get(account_id, 0)
        new_held = account.held + posting.held_changes.get(account_id, 0)
        if not account.may_go_negative and new_posted < new_held:
            raise InsufficientFunds(
                _("Not enough points: %(available)d available, %(needed)d needed.")
                % {"available": account.available, "needed": -per_account.get(account_id, 0)},
                param="amount",
            )
        Account.objects.filter(pk=account_id).update(posted=new_posted, held=new_held, version=F("version") + 1)
        running[account_id] = account.posted
        account.posted, account.held, account.version = new_posted, new_held, account.version + 1
    for account_id, amount in posting.legs:
        running[account_id] += amount
        account = posting.accounts[account_id]
        entries.append(
            Entry(
                transaction=posting.txn,
                account_id=account_id,
                unit=account.unit,
                amount=amount,
                balance_after=running[account_id],
            )
        )
    Entry.objects.bulk_create(entries)
    return posting.txn


def _credit_wallet(
    posting: Posting, *, wallet: Account, debt: Account, program: PointsProgram, amount: int, earned_on: dt.date
) -> tuple[int, Lot | None]:
    """Credits `amount` points: a points debt is paid off first, the rest lands in a new lot. Returns (paid, lot)."""
    outstanding = -posting.acc(debt).posted
    paid = min(amount, outstanding)
    posting.leg(debt, paid)
    credited = amount - paid
    lot = None
    if credited:
        posting.leg(wallet, credited)
        lot = Lot.objects.create(
            account_id=wallet.pk,
            program=program,
            earned_by=posting.txn,
            amount=credited,
            remaining=credited,
            earned_on=earned_on,
            expires_on=lot_expiry(program, earned_on),
        )
    return paid, lot


def _consume_lots(posting: Posting, wallet: Account, amount: int) -> list[tuple[int, int]]:
    """Takes `amount` from the wallet's lots, soonest expiry first; records and returns (lot id, taken)."""
    taken: list[tuple[int, int]] = []
    need = amount
    lots = Lot.objects.filter(account_id=wallet.pk, remaining__gt=0).order_by("expires_on", "id")
    for lot in lots.only("id", "remaining"):
        if need == 0:
            break
        take = min(need, lot.remaining)
        Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
        taken.append((lot.pk, take))
        need -= take
    if need:
        raise AssertionError(f"wallet {wallet.pk} lots do not cover its balance (short by {need})")
    LotMovement.objects.bulk_create(LotMovement(transaction=posting.txn, lot_id=lot, amount=-n) for lot, n in taken)
    return taken


def _require_positive(amount: int, param: str = "amount") -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValidationFailed(_("The amount must be a positive whole number of points."), param=param)


@dataclass(frozen=True)
class Party:
    """Who funds or receives a CNY obligation: ("bank", id), ("merchant", id) or ("alliance", 0)."""

    kind: str
    id: int

    def as_list(self) -> list[Any]:
        return [self.kind, self.id]


def _clearing_pair(payer: Party | None, payee: Party | None) -> list[Account]:
    if payer is None or payee is None or payer == payee:
        return []
    return [clearing_account(payer.kind, payer.id), clearing_account(payee.kind, payee.id)]


def _obligation(posting: Posting, *, payer: Party, payee: Party, units: int) -> None:
    if units <= 0 or payer == payee:
        return
    payer_account = clearing_account(payer.kind, payer.id)
    payee_account = clearing_account(payee.kind, payee.id)
    assert payer_account.pk in posting.accounts, "lock clearing accounts first"
    assert payee_account.pk in posting.accounts, "lock clearing accounts first"
    posting.leg(payer_account, -units)
    posting.leg(payee_account, units)


def _earn_digest(
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    source: str,
    funded_by: Party | None,
    earned_on: dt.date,
    metadata: dict[str, Any],
) -> str:
    """Checks an earn's amount and source; the hash its idempotency key is bound to."""
    _require_positive(amount)
    if source not in EarnSource.ALL:
        raise ValidationFailed(_("Unknown earning source."), param="source")
    return request_hash(
        op="earn",
        cardholder=cardholder_id,
        program=program.pk,
        amount=amount,
        source=source,
        funded_by=funded_by.as_list() if funded_by else None,
        earned_on=earned_on,
        metadata=metadata,
    )


def _earn_meta(
    metadata: dict[str, Any] | None, cardholder_id: int, program: PointsProgram, source: str
) -> dict[str, Any]:
    """The metadata an earn's ledger transaction records: the caller's, with whose points, which programme, why."""
    return {**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk, "source": source}


# --- earn, spend --------------------------------------------------------------------------------------------------


class EarnSource:
    PAYMENT = "payment"
    PROMOTION = "promotion"
    CAMPAIGN = "campaign"
    OPERATOR = "operator"
    ALL = (PAYMENT, PROMOTION, CAMPAIGN, OPERATOR)


@retry_on_conflict
def points_earn(
    *,
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    idempotency_key: str,
    source: str = EarnSource.PAYMENT,
    funded_by: Party | None = None,
    earned_on: dt.date | None = None,
    actor: Actor = None,
    metadata: dict[str, Any] | None = None,
) -> LedgerTransaction:
    """Credits points to a cardholder in `program`'s unit (debt first, then a new lot).

    `funded_by` (a merchant's multiplier, another bank's campaign) owes the issuing bank the points' CNY value,
    posted in the same transaction.
    """
    earned_on = earned_on or today()
    digest = _earn_digest(cardholder_id, program, amount, source, funded_by, earned_on, metadata or {})
    return _earn_atomic(
        cardholder_id, program, amount, idempotency_key, digest, source, funded_by, earned_on, actor, metadata
    )


@transaction.atomic
def _earn_atomic(
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    key: str,
    digest: str,
    source: str,
    funded_by: Party | None,
    earned_on: dt.date,
    actor: Actor,
    metadata: dict[str, Any] | None,
) -> LedgerTransaction:
    wallet, debt = wallet_account(cardholder_id, program), debt_account(cardholder_id, program)
    issuance = bank_points_account(program, Purpose.ISSUANCE, cardholder_id)
    meta = _earn_meta(metadata, cardholder_id, program, source)
    funded_units = 0
    if funded_by is not None:
        funded_units = points_value_units(amount, program)
        meta.update(funded_by=funded_by.as_list(), funded_units=funded_units)
    posting = _begin(
        kind=Kind.EARN,
        key=key,
        digest=digest,
        accounts=[wallet, debt, issuance, *_clearing_pair(funded_by, Party(OwnerKind.BANK, program.bank_id))],
        actor=actor,
        metadata=meta,
        points=amount,
    )
    if isinstance(posting, LedgerTransaction):
        return posting
    posting.leg(issuance, -amount)
    _credit_wallet(posting, wallet=wallet, debt=debt, program=program, amount=amount, earned_on=earned_on)
    if funded_by is not None:
        _obligation(posting, payer=funded_by, payee=Party(OwnerKind.BANK, program.bank_id), units=funded_units)
    return _finish(posting)


@retry_on_conflict
def points_redeem(
    *,
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    idempotency_key: str,
    pays_to: Party | None = None,
    actor: Actor = None,
    metadata: dict[str, Any] | None = None,
) -> LedgerTransaction:
    """Spends points (soonest-expiring lots first). `pays_to`: another party whose benefit the points pay for is owed
    their CNY value by the issuing bank, in the same transaction."""
    _require_positive(amount)
    digest = request_hash(
        op="redeem",
        cardholder=cardholder_id,
        program=program.pk,
        amount=amount,
        pays_to=pays_to.as_list() if pays_to else None,
        metadata=metadata or {},
    )
    return _redeem_atomic(cardholder_id, program, amount, idempotency_key, digest, pays_to, actor, metadata)


@transaction.atomic
def _redeem_atomic(
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    key: str,
    digest: str,
    pays_to: Party | None,
    actor: Actor,
    metadata: dict[str, Any] | None,
) -> LedgerTransaction:
    wallet = wallet_account(cardholder_id, program)
    _expire_overdue(wallet)
    sink = bank_points_account(program, Purpose.REDEMPTION, cardholder_id)
    meta = {**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk}
    units = 0
    if pays_to is not None:
        units = points_value_units(amount, program)
        meta.update(pays_to=pays_to.as_list(), funded_units=units)
    posting = _begin(
        kind=Kind.SPEND,
        key=key,
        digest=digest,
        accounts=[wallet, sink, *_clearing_pair(Party(OwnerKind.BANK, program.bank_id), pays_to)],
        actor=actor,
        metadata=meta,
        points=amount,
    )
    if isinstance(posting, LedgerTransaction):
        return posting
    _spend(posting, wallet, sink, amount)
    if pays_to is not None:
        _obligation(posting, payer=Party(OwnerKind.BANK, program.bank_id), payee=pays_to, units=units)
    return _finish(posting)


def _spend(posting: Posting, wallet: Account, sink: Account, amount: int) -> None:
    available = posting.acc(wallet).available
    if available < amount:
        raise InsufficientFunds(
            _("Not enough points: %(available)d available, %(needed)d needed.")
            % {"available": max(available, 0), "needed": amount},
            param="amount",
        )
    _consume_lots(posting, wallet, amount)
    posting.leg(wallet, -amount)
    posting.leg(sink, amount)


# --- holds --------------------------------------------------------------------------------------------------------


@retry_on_conflict
def hold_create(
    *,
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    idempotency_key: str,
    expires_at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> Hold:
    """Reserves points: available = posted − held drops at once; the points are spent only when the hold posts."""
    _require_positive(amount)
    expires_at = expires_at or timezone.now() + dt.timedelta(seconds=settings.LEDGER_HOLD_TTL_SECONDS)
    digest = request_hash(op="hold", cardholder=cardholder_id, program=program.pk, amount=amount)
    with transaction.atomic():
        existing = _replay(Hold, idempotency_key, digest)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        wallet = wallet_account(cardholder_id, program)
        _expire_overdue(wallet)
        locked = _lock_accounts([wallet])[wallet.pk]
        if locked.available < amount:
            raise InsufficientFunds(
                _("Not enough points: %(available)d available, %(needed)d needed.")
                % {"available": max(locked.available, 0), "needed": amount},
                param="amount",
            )
        Account.objects.filter(pk=wallet.pk).update(held=F("held") + amount, version=F("version") + 1)
        return Hold.objects.create(
            account=wallet,
            amount=amount,
            idempotency_key=idempotency_key,
            request_hash=digest,
            expires_at=expires_at,
            metadata={**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk},
        )


def _locked_hold(hold_id: int, *also: Account) -> tuple[Account, Hold]:
    """Locks the hold's wallet (with `also`, in id order), then the hold."""
    account_id = Hold.objects.filter(pk=hold_id).values_list("account_id", flat=True).first()
    if account_id is None:
        raise NotFound(_("No such hold."), param="hold")
    wallet = Account.objects.get(pk=account_id)
    account = _lock_accounts([wallet, *also])[account_id]
    hold = Hold.objects.select_for_update().get(pk=hold_id)
    return account, hold


@retry_on_conflict
def hold_post(
    *, hold_id: int, idempotency_key: str, amount: int | None = None, actor: Actor = None
) -> LedgerTransaction:
    """Spends `amount` (default: all) of a pending hold and releases the rest. A hold posts at most once."""
    if amount is not None:
        _require_positive(amount)
    with transaction.atomic():
        wallet = Account.objects.filter(holds__pk=hold_id).first()
        if wallet is None:
            raise NotFound(_("No such hold."), param="hold")
        program = PointsProgram.objects.get(pk=wallet.program_id or 0)
        cardholder_id = wallet.owner_id
        sink = bank_points_account(program, Purpose.REDEMPTION, cardholder_id)
        account, hold = _locked_hold(hold_id, sink)
        digest = request_hash(op="hold_post", hold=hold_id, amount=amount if amount is not None else hold.amount)
        existing = _replay(LedgerTransaction, idempotency_key, digest)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        if hold.status != Hold.Status.PENDING:
            raise Conflict(_("This hold is already %(status)s.") % {"status": hold.get_status_display()})
        to_post = hold.amount if amount is None else amount
        if to_post > hold.amount:
            raise ValidationFailed(_("Cannot post more than the hold."), param="amount")
        posting = _begin(
            kind=Kind.HOLD_POST,
            key=idempotency_key,
            digest=digest,
            accounts=[account, sink],
            actor=actor,
            metadata={"cardholder_id": cardholder_id, "program_id": program.pk, "hold_id": hold.pk},
            points=to_post,
        )
        assert isinstance(posting, Posting)
        posting.held_changes[account.pk] = -hold.amount
        _consume_lots(posting, account, to_post)
        posting.leg(account, -to_post)
        posting.leg(sink, to_post)
        txn = _finish(posting)
        Hold.objects.filter(pk=hold.pk).update(
            status=Hold.Status.POSTED, posted_amount=to_post, transaction=txn, resolved_at=timezone.now()
        )
        return txn


@retry_on_conflict
def hold_void(*, hold_id: int, expired: bool = False) -> Hold:
    """Releases a pending hold. Voiding a voided hold is a no-op; a posted hold cannot be voided."""
    with transaction.atomic():
        account, hold = _locked_hold(hold_id)
        target = Hold.Status.EXPIRED if expired else Hold.Status.VOIDED
        if hold.status in (Hold.Status.VOIDED, Hold.Status.EXPIRED):
            return hold
        if hold.status != Hold.Status.PENDING:
            raise Conflict(_("This hold is already %(status)s.") % {"status": hold.get_status_display()})
        Account.objects.filter(pk=account.pk).update(held=F("held") - hold.amount, version=F("version") + 1)
        hold.status, hold.resolved_at = target, timezone.now()
        hold.save(update_fields=["status", "resolved_at"])
        return hold


def holds_expire(*, now: dt.datetime | None = None) -> int:
    """Voids every pending hold past its time; returns how many."""
    now = now or timezone.now()
    ids = list(Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lte=now).values_list("pk", flat=True))
    expired = 0
    for hold_id in ids:
        if hold_void(hold_id=hold_id, expired=True).status == Hold.Status.EXPIRED:
            expired += 1
    return expired


# --- exchange -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeQuote:
    rate: Decimal
    points_out: int
    payer_units: int
    payee_units: int
    fee_units: int


def exchange_quote(*, from_program: PointsProgram, to_program: PointsProgram, amount: int) -> ExchangeQuote:
    """rate = value(from) × (1 − fee) / value(to); points out are rounded down and the CNY the paying bank owes is
    rounded up, the receiving bank's share down: every rounding remainder goes to the alliance."""
    _require_positive(amount)
    if from_program.pk == to_program.pk:
        raise ValidationFailed(_("Choose two different programs."), param="to_program")
    if not (from_program.active and to_program.active):
        raise ValidationFailed(_("Both programs must be active."), param="to_program")
    if amount < settings.LEDGER_EXCHANGE_MIN_POINTS:
        raise ValidationFailed(
            _("The minimum exchange is %(minimum)d points.") % {"minimum": settings.LEDGER_EXCHANGE_MIN_POINTS},
            param="amount",
        )
    fee_rate = Decimal(settings.LEDGER_EXCHANGE_FEE_RATE)
    rate = (from_program.point_value_cny * (1 - fee_rate) / to_program.point_value_cny).quantize(
        Decimal("0.0000000001"), rounding=ROUND_FLOOR
    )
    points_out = int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_FLOOR))
    if points_out < 1:
        raise ValidationFailed(_("Too few points to exchange at this rate."), param="amount")
    payer_units = points_value_units(amount, from_program, ROUND_CEILING)
    payee_units = points_value_units(points_out, to_program, ROUND_FLOOR)
    return ExchangeQuote(rate, points_out, payer_units, payee_units, payer_units - payee_units)


@retry_on_conflict
def points_exchange(
    *,
    cardholder_id: int,
    from_program: PointsProgram,
    to_program: PointsProgram,
    amount: int,
    idempotency_key: str,
    actor: Actor = None,
) -> LedgerTransaction:
    """Moves a cardholder's points from one bank's program to another's, with the inter-bank CNY obligation."""
    quote = exchange_quote(from_program=from_program, to_program=to_program, amount=amount)
    digest = request_hash(
        op="exchange", cardholder=cardholder_id, src=from_program.pk, dst=to_program.pk, amount=amount
    )
    with transaction.atomic():
        src_wallet = wallet_account(cardholder_id, from_program)
        _expire_overdue(src_wallet)
        src_sink = bank_points_account(from_program, Purpose.EXCHANGE, cardholder_id)
        dst_wallet, dst_debt = wallet_account(cardholder_id, to_program), debt_account(cardholder_id, to_program)
        dst_issuance = bank_points_account(to_program, Purpose.ISSUANCE, cardholder_id)
        payer, payee = (
            clearing_account(OwnerKind.BANK, from_program.bank_id),
            clearing_account(OwnerKind.BANK, to_program.bank_id),
        )
        fees = clearing_account(OwnerKind.ALLIANCE, ALLIANCE_ID)
        posting = _begin(
            kind=Kind.EXCHANGE,
            key=idempotency_key,
            digest=digest,
            accounts=[src_wallet, src_sink, dst_wallet, dst_debt, dst_issuance, payer, payee, fees],
            actor=actor,
            metadata={
                "cardholder_id": cardholder_id,
                "program_id": from_program.pk,
                "to_program_id": to_program.pk,
                "points_out": quote.points_out,
                "payer_units": quote.payer_units,
                "payee_units": quote.payee_units,
                "fee_units": quote.fee_units,
            },
            points=amount,
            rate=quote.rate,
        )
        if isinstance(posting, LedgerTransaction):
            return posting
        _spend(posting, src_wallet, src_sink, amount)
        posting.leg(dst_issuance, -quote.points_out)
        _credit_wallet(
            posting, wallet=dst_wallet, debt=dst_debt, program=to_program, amount=quote.points_out, earned_on=today()
        )
        posting.leg(payer, -quote.payer_units)
        posting.leg(payee, quote.payee_units)
        posting.leg(fees, quote.fee_units)
        return _finish(posting)


# --- reverse ------------------------------------------------------------------------------------------------------


@retry_on_conflict
def transaction_reverse(
    *,
    transaction_id: int,
    idempotency_key: str,
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
    far rounds to nothing more to reverse."""
    if (amount is None) == (refunded_total is None or captured_total is None):
        raise ValidationFailed(_("Give either an amount or refunded and captured totals."), param="amount")
    if amount is not None:
        _require_positive(amount)
    elif (
        captured_total is not None
        and refunded_total is not None
        and (captured_total <= 0 or refunded_total < 0 or refunded_total > captured_total)
    ):
        raise ValidationFailed(_("The refunded total must be between 0 and the captured total."), param="amount")
    original = LedgerTransaction.objects.filter(pk=transaction_id).first()
    if original is None:
        raise NotFound(_("No such ledger transaction."), param="transaction")
    digest = request_hash(
        op="reverse", txn=transaction_id, amount=amount, refunded=refunded_total, captured=captured_total
    )
    with transaction.atomic():
        existing = _replay(LedgerTransaction, idempotency_key, digest)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        return _reverse_locked(original, idempotency_key, digest, amount, refunded_total, captured_total, actor, reason)


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
    wallet, debt = wallet_account(cardholder_id, program), debt_account(cardholder_id, program)
    own_accounts = list(Account.objects.filter(entries__transaction=original).distinct())
    breakage = bank_points_account(program, Purpose.BREAKAGE, cardholder_id)
    accounts = [wallet, debt, breakage, *own_accounts]
    metadata: dict[str, Any] = {
        "cardholder_id": cardholder_id,
        "program_id": program.pk,
        "reverses_kind": original.kind,
        "reason": reason,
    }
    target: tuple[PointsProgram, Account, Account] | None = None
    if exchange:
        dst_program = PointsProgram.objects.get(pk=meta["to_program_id"])
        # The target wallet has no entry in the exchange when every point paid off a debt, so it is named here.
        target = (dst_program, wallet_account(cardholder_id, dst_program), debt_account(cardholder_id, dst_program))
        accounts += target[1:]
        metadata["to_program_id"] = dst_program.pk
    posting = _begin(
        kind=Kind.REVERSAL,
        key=key,
        digest=digest,
        accounts=accounts,
        actor=actor,
        metadata=metadata,
        reverses=original,
    )
    if isinstance(posting, LedgerTransaction):
        return posting
    locked_original = LedgerTransaction.objects.select_for_update().get(pk=original.pk)
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
    by_account: dict[int, int] = defaultdict(int)
    for account_id, value in Entry.objects.filter(transaction=original).values_list("account_id", "amount"):
        by_account[account_id] += value
    bank_side = next(a for a in own_accounts if a.owner_kind == OwnerKind.BANK and a.unit == program.unit_code)
    if earn_like:
        _unearn(posting, original, wallet, debt, delta)
        posting.leg(bank_side, delta)
    else:  # a spend, or the source side of an exchange
        _unspend(posting, original, wallet, breakage, delta)
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
            _unearn(posting, original, dst_wallet, dst_debt, taken_back)
            posting.leg(dst_issuance, taken_back)
        posting.txn.metadata["points_out"] = taken_back
    _reverse_cny(posting, own_accounts, by_account, points, done_before, done_after)
    posting.txn.save(update_fields=["points", "metadata"])
    LedgerTransaction.objects.filter(pk=original.pk).update(reversed_points=done_after)
    return _finish(posting)


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
    locked = posting.acc(wallet)
    from_lot = min(delta, lot.remaining if lot else 0, max(locked.available, 0))
    if from_lot and lot is not None:
        Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - from_lot)
        LotMovement.objects.create(transaction=posting.txn, lot=lot, amount=-from_lot)
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
        movements.append(LotMovement(transaction=posting.txn, lot=lot, amount=give))
        back_to_wallet += give
    if need:
        raise AssertionError(f"transaction {original.pk}: spent lots do not cover the reversal (short by {need})")
    LotMovement.objects.bulk_create(movements)
    posting.leg(wallet, back_to_wallet)
    posting.leg(breakage, delta - back_to_wallet)
    if expired_now:
        posting.txn.metadata["expired_lots"] = expired_now


# --- expiry -------------------------------------------------------------------------------------------------------


def lots_expire(*, on: dt.date | None = None) -> dict[str, int]:
    """Expires every lot whose last valid day is before `on`: one transaction per cardholder and program. Points that
    are held stay until the hold resolves (the next run takes them)."""
    on = on or today()
    wallet_ids = list(
        Lot.objects.filter(remaining__gt=0, expires_on__lt=on)
        .values_list("account_id", flat=True)
        .distinct()
        .order_by("account_id")
    )
    counts = {"accounts": 0, "points": 0}
    for wallet_id in wallet_ids:
        expired = _expire_wallet(wallet_id, on)
        if expired:
            counts["accounts"] += 1
            counts["points"] += expired
    return counts


def _overdue_lots(wallet_id: int, on: dt.date) -> list[tuple[int, int]]:
    return list(
        Lot.objects.filter(account_id=wallet_id, remaining__gt=0, expires_on__lt=on)
        .order_by("id")
        .values_list("id", "remaining")
    )


def _expire_overdue(wallet: Account) -> None:
    """Points whose lot is past its last valid day are not spendable, even before the daily job has run: a spend
    (or a hold) first expires the wallet's overdue lots, in a posting of their own, exactly as the job would."""
    if _overdue_lots(wallet.pk, today()):
        _expire_wallet(wallet.pk, today())


@retry_on_conflict
def _expire_wallet(wallet_id: int, on: dt.date) -> int:
    with transaction.atomic():
        overdue = _overdue_lots(wallet_id, on)
        if not overdue:
            return 0
        wallet = Account.objects.get(pk=wallet_id)
        program = PointsProgram.objects.get(pk=wallet.program_id or 0)
        breakage = bank_points_account(program, Purpose.BREAKAGE, wallet.owner_id)
        # The key names the lots as they stand, so a second expiry on the same day (a spend's, then the job's, or
        # points released by a hold) is a new posting, while two runs over the same lots post once.
        lots_digest = hashlib.sha256(repr(overdue).encode()).hexdigest()[:16]
        key = f"expire:{wallet_id}:{on.isoformat()}:{lots_digest}"
        posting = _begin(
            kind=Kind.EXPIRE,
            key=key,
            digest=request_hash(op="expire", wallet=wallet_id, on=on, lots=overdue),
            accounts=[wallet, breakage],
            actor=None,
            metadata={"cardholder_id": wallet.owner_id, "program_id": program.pk, "on": on.isoformat()},
        )
        if isinstance(posting, LedgerTransaction):
            return 0
        # Held points are taken from the soonest-expiring lots when their hold posts, so they are the overdue ones:
        # what is held stays until the hold resolves (the next run takes it), and valid lots are never touched.
        locked = posting.acc(wallet)
        budget = min(max(sum(remaining for _lot, remaining in overdue) - locked.held, 0), max(locked.available, 0))
        movements: list[LotMovement] = []
        total = 0
        lots = Lot.objects.filter(account_id=wallet_id, remaining__gt=0, expires_on__lt=on).order_by("expires_on", "id")
        for lot in lots:
            take = min(lot.remaining, budget - total)
            if take <= 0:
                break
            Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
            movements.append(LotMovement(transaction=posting.txn, lot=lot, amount=-take))
            total += take
        if total == 0:
            transaction.set_rollback(True)
            return 0
        LotMovement.objects.bulk_create(movements)
        posting.txn.points = total
        posting.txn.save(update_fields=["points"])
        posting.leg(wallet, -total)
        posting.leg(breakage, total)
        _finish(posting)
        return total


# --- adjustments (four eyes) --------------------------------------------------------------------------------------


@transaction.atomic
def adjustment_request(
    *, cardholder_id: int, program: PointsProgram, amount: int, reason: str, requested_by: AbstractBaseUser
) -> AdjustmentRequest:
    if not isinstance(amount, int) or amount == 0:
        raise ValidationFailed(_("An adjustment is a non-zero whole number of points."), param="amount")
    if not reason.strip():
        raise ValidationFailed(_("Give a reason for the adjustment."), param="reason")
    request = AdjustmentRequest.objects.create(
        cardholder_id=cardholder_id,
        program=program,
        bank_id=program.bank_id,
        amount=amount,
        reason=reason.strip(),
        requested_by=requested_by,  # type: ignore[misc]
    )
    audit_record(
        actor=requested_by,
        action="ledger.adjustment.request",
        obj=request,
        after={"cardholder_id": cardholder_id, "program": program.unit_code, "amount": amount},
        reason=request.reason,
        bank_id=program.bank_id,
    )
    return request


def _decide(request_id: int, approver: AbstractBaseUser) -> AdjustmentRequest:
    request = AdjustmentRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None:
        raise NotFound(_("No such adjustment request."), param="request")
    if request.status != AdjustmentRequest.Status.PENDING:
        raise Conflict(_("This adjustment was already decided."))
    if request.requested_by_id == approver.pk:
        raise PermissionDenied(_("A second operator must approve an adjustment."))
    return request


@retry_on_conflict
def adjustment_approve(*, request_id: int, approver: AbstractBaseUser) -> LedgerTransaction:
    """A different operator approves: the adjustment posts (a credit forms a lot; a debit spends lots)."""
    with transaction.atomic():
        request = _decide(request_id, approver)
        program = request.program
        wallet = wallet_account(request.cardholder_id, program)
        if request.amount < 0:
            _expire_overdue(wallet)
        debt = debt_account(request.cardholder_id, program)
        issuance = bank_points_account(program, Purpose.ISSUANCE, request.cardholder_id)
        posting = _begin(
            kind=Kind.ADJUST,
            key=f"adjustment:{request.pk}",
            digest=request_hash(op="adjust", request=request.pk),
            accounts=[wallet, debt, issuance],
            actor=approver,
            metadata={
                "cardholder_id": request.cardholder_id,
                "program_id": program.pk,
                "direction": 1 if request.amount > 0 else -1,
                "adjustment_request": request.pk,
                "reason": request.reason,
                "requested_by": request.requested_by_id,
            },
            points=abs(request.amount),
        )
        assert isinstance(posting, Posting)
        if request.amount > 0:
            posting.leg(issuance, -request.amount)
            _credit_wallet(posting, wallet=wallet, debt=debt, program=program, amount=request.amount, earned_on=today())
        else:
            _spend(posting, wallet, issuance, -request.amount)
        txn = _finish(posting)
        request.status, request.decided_at = AdjustmentRequest.Status.POSTED, timezone.now()
        request.decided_by = approver  # type: ignore[assignment]
        request.transaction = txn
        request.save(update_fields=["status", "decided_by", "decided_at", "transaction"])
        audit_record(
            actor=approver,
            action="ledger.adjustment.approve",
            obj=request,
            after={"transaction": txn.pk, "amount": request.amount},
            reason=request.reason,
            bank_id=request.bank_id,
        )
        return txn


@transaction.atomic
def adjustment_reject(*, request_id: int, approver: AbstractBaseUser, reason: str = "") -> AdjustmentRequest:
    request = _decide(request_id, approver)
    request.status, request.decided_at = AdjustmentRequest.Status.REJECTED, timezone.now()
    request.decided_by = approver  # type: ignore[assignment]
    request.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(actor=approver, action="ledger.adjustment.reject", obj=request, reason=reason, bank_id=request.bank_id)
    return request


# --- bulk earn (settlement) ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EarnEvent:
    cardholder_id: int
    program_id: int
    amount: int


@retry_on_conflict
def points_earn_bulk(
    *, events: Sequence[EarnEvent], idempotency_key: str, earned_on: dt.date | None = None, source: str = "payment"
) -> LedgerTransaction:
    """Many earns in one ledger transaction, set-based: one entry per event (each payment stays traceable), one lot
    per wallet (the batch's points in a wallet are earned together, with one expiry date), one issuance entry per
    program. A cardholder's points debt is paid off first, as in `points_earn`. The rows go in by COPY."""
    if not events:
        raise ValidationFailed(_("No earn events given."), param="events")
    for event in events:
        _require_positive(event.amount)
    earned_on = earned_on or today()
    digest = hashlib.sha256(
        "\n".join(f"{e.cardholder_id}|{e.program_id}|{e.amount}" for e in events).encode()
        + f"|{earned_on}|{source}".encode()
    ).hexdigest()
    with transaction.atomic():
        existing = _replay(LedgerTransaction, idempotency_key, digest)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        programs = {p.pk: p for p in PointsProgram.objects.filter(pk__in={e.program_id for e in events})}
        if len(programs) != len({e.program_id for e in events}):
            raise ValidationFailed(_("Unknown points program in the events."), param="events")
        pairs = {(e.cardholder_id, e.program_id) for e in events}
        wallets = _bulk_accounts(pairs, programs, Purpose.POINTS)
        issuance = {pid: bank_points_account(p, Purpose.ISSUANCE, 0) for pid, p in programs.items()}
        debts = {
            (a.owner_id, a.program_id): a
            for a in Account.objects.filter(
                owner_kind=OwnerKind.CARDHOLDER,
                purpose=Purpose.DEBT,
                posted__lt=0,
                owner_id__in={c for c, _p in pairs},
                program_id__in=list(programs),
            )
        }
        txn = LedgerTransaction.objects.create(
            kind=Kind.EARN_BATCH,
            idempotency_key=idempotency_key,
            request_hash=digest,
            points=sum(e.amount for e in events),
            metadata={"events": len(events), "source": source, "earned_on": earned_on.isoformat()},
        )
        lock_ids = sorted(
            {a.pk for a in wallets.values()} | {a.pk for a in issuance.values()} | {a.pk for a in debts.values()}
        )
        balances: dict[int, int] = {}
        with connection.cursor() as cursor:
            for start in range(0, len(lock_ids), 5000):
                chunk = lock_ids[start : start + 5000]
                placeholders = ",".join(["%s"] * len(chunk))
                cursor.execute(
                    f"SELECT id, posted FROM rewards_account WHERE id IN ({placeholders}) ORDER BY id FOR UPDATE",  # noqa: S608
                    chunk,
                )
                balances.update(dict(cursor.fetchall()))
        deltas: dict[int, int] = defaultdict(int)
        entries: list[tuple[int, str, int, int]] = []
        lot_points: dict[tuple[int, int], int] = defaultdict(int)  # (wallet, program) → points earned together
        per_program: dict[int, int] = defaultdict(int)
        for event in events:
            program = programs[event.program_id]
            credit = event.amount
            debt = debts.get((event.cardholder_id, event.program_id))
            if debt is not None and balances[debt.pk] < 0:
                paid = min(credit, -balances[debt.pk])
                balances[debt.pk] += paid
                deltas[debt.pk] += paid
                entries.append((debt.pk, program.unit_code, paid, balances[debt.pk]))
                credit -= paid
            per_program[event.program_id] += event.amount
            if credit:
                wallet = wallets[(event.cardholder_id, event.program_id)]
                balances[wallet.pk] += credit
                deltas[wallet.pk] += credit
                entries.append((wallet.pk, program.unit_code, credit, balances[wallet.pk]))
                lot_points[(wallet.pk, event.program_id)] += credit
        for program_id, total in per_program.items():
            account = issuance[program_id]
            balances[account.pk] -= total
            deltas[account.pk] -= total
            entries.append((account.pk, programs[program_id].unit_code, -total, balances[account.pk]))
        lots = [
            (wallet_id, program_id, points, lot_expiry(programs[program_id], earned_on))
            for (wallet_id, program_id), points in lot_points.items()
        ]
        _bulk_write(txn.pk, entries, lots, deltas, earned_on)
        return txn


def _bulk_accounts(
    pairs: set[tuple[int, int]], programs: dict[int, PointsProgram], purpose: str
) -> dict[tuple[int, int], Account]:
    def fetch() -> dict[tuple[int, int], Account]:
        found = Account.objects.filter(
            owner_kind=OwnerKind.CARDHOLDER,
            purpose=purpose,
            shard=0,
            owner_id__in={c for c, _p in pairs},
            program_id__in=list(programs),
        )
        return {(a.owner_id, a.program_id): a for a in found if a.program_id is not None}

    accounts = fetch()
    missing = pairs - set(accounts)
    if missing:
        Account.objects.bulk_create(
            [
                Account(
                    owner_kind=OwnerKind.CARDHOLDER,
                    owner_id=cardholder_id,
                    purpose=purpose,
                    unit=programs[program_id].unit_code,
                    program_id=program_id,
                    bank_id=programs[program_id].bank_id,
                    may_go_negative=purpose != Purpose.POINTS,
                )
                for cardholder_id, program_id in missing
            ],
            ignore_conflicts=True,
        )
        accounts = fetch()
    return accounts


def _bulk_write(
    txn_id: int,
    entries: list[tuple[int, str, int, int]],
    lots: list[tuple[int, int, int, dt.date]],
    deltas: dict[int, int],
    earned_on: dt.date,
) -> None:
    import io

    with connection.cursor() as cursor:
        raw = cursor.cursor
        buffer = io.StringIO("".join(f"{txn_id}\t{a}\t{u}\t{amt}\t{bal}\n" for a, u, amt, bal in entries))
        raw.copy_expert(
            "COPY rewards_entry (transaction_id, account_id, unit, amount, balance_after) FROM STDIN", buffer
        )
        day = earned_on.isoformat()
        buffer = io.StringIO(
            "".join(f"{a}\t{p}\t{txn_id}\t{amt}\t{amt}\t{day}\t{exp.isoformat()}\n" for a, p, amt, exp in lots)
        )
        raw.copy_expert(
            "COPY rewards_lot (account_id, program_id, earned_by_id, amount, remaining, earned_on, expires_on)"
            " FROM STDIN",
            buffer,
        )
        ids, amounts = zip(*deltas.items(), strict=True)
        cursor.execute(
            "UPDATE rewards_account a SET posted = a.posted + d.delta, version = a.version + 1"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, delta) WHERE a.id = d.id",
            [list(ids), list(amounts)],
        )
