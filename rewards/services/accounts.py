"""The ledger's accounts, created on first use (`account_get_or_create`).

A cardholder has a points wallet (the one kind of account that may not go negative) and a points debt in each
programme; a programme's bank has its issuance, redemption, breakage and exchange sub-accounts, spread over
`LEDGER_BANK_SHARDS` shards by cardholder; a bank and a merchant have a CNY clearing account, and the alliance has a
fee account.
"""

from __future__ import annotations

from django.conf import settings

from members.models import PointsProgram

from ..models import Account, OwnerKind, Purpose

CNY = "CNY"
ALLIANCE_ID = 0


def _shard_for(key: int) -> int:
    return key % max(1, settings.LEDGER_BANK_SHARDS)


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
