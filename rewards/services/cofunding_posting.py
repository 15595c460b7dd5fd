"""The co-funding bank's part of a promotion use, as a ledger obligation that clearing nets.

A co-funded promotion's use records the bank's part of its cost (`PromotionUse.cofunder_cost`, minor units of the
promotion's currency). When the use is consumed (the payment's capture), the same database transaction posts a
`cofunding` transaction: the co-funding bank's clearing account in that currency owes the merchant's (which clearing
counts toward the merchant's sponsor bank). A refund hands the bank's part back cumulatively, as settlement does
(`merchant_part_returned`): the bank's part returned so far = floor(cofunder_cost × returned cost / cost), each step a
`reversal` of the co-funding transaction, so partial refunds add up to exactly `cofunder_cost` on a full one.

Only live promotions post: a test-mode payment never makes a real obligation between members. A refund hands back
between the parties and in the currency the co-funding was posted in (the promotion's bank may change later); a use
whose co-funding was never posted returns nothing. See docs/promotions.md and docs/clearing.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.money import proportional_floor

from ..models import LedgerTransaction, OwnerKind, PromotionUse
from .obligations import Party, clearing_pair, minor_units, obligation
from .posting import Kind, begin, finish, keyed, request_hash, retry_on_conflict


@dataclass(frozen=True)
class Cofunded:
    """A consumed use as its co-funding needs it."""

    use_id: int
    payment: str
    promotion: str  # the promotion's public id
    merchant_id: int
    cofunder_id: int | None
    currency: str
    livemode: bool
    cofunder_cost: int  # minor units: the co-funding bank's part of the use's cost

    @property
    def posts(self) -> bool:
        return self.livemode and self.cofunder_id is not None and self.cofunder_cost > 0

    def parties(self) -> tuple[Party, Party]:
        """(the co-funding bank, the merchant)."""
        assert self.cofunder_id is not None
        return Party(OwnerKind.BANK, self.cofunder_id), Party(OwnerKind.MERCHANT, self.merchant_id)


def cofunding_key(use_id: int) -> str:
    return f"cofund:{use_id}"


@retry_on_conflict
def cofunding_post(use: Cofunded) -> LedgerTransaction | None:
    """Posts the co-funding bank's part of a consumed use (in the capture's transaction): the bank −, the merchant +,
    in the promotion's currency. Once per use (its key names the use): a second call posts nothing and returns the
    first transaction. None when nothing is owed (no co-funding, nothing of it kept, or a test-mode promotion)."""
    if not use.posts:
        return None
    bank, merchant = use.parties()
    units = minor_units(use.cofunder_cost, use.currency)
    key = cofunding_key(use.use_id)
    digest = request_hash(
        op="cofunding", use=use.use_id, bank=bank.id, merchant=merchant.id, units=units, currency=use.currency
    )

    def work() -> LedgerTransaction:
        posting = begin(
            kind=Kind.COFUNDING,
            key=key,
            digest=digest,
            refs=clearing_pair(bank, merchant, use.currency),
            actor=None,
            metadata={
                "payment": use.payment,
                "promotion": use.promotion,
                "use": use.use_id,
                "currency": use.currency,
                "cofunder_id": bank.id,
                "merchant_id": merchant.id,
                "cofunder_cost": use.cofunder_cost,
            },
        )
        obligation(posting, payer=bank, payee=merchant, units=units, currency=use.currency)
        return finish(posting)

    return keyed(LedgerTransaction, key, digest, work)


def bank_part_returned(cofunder_cost: int, cost: int, returned_cost: int) -> int:
    """The co-funding bank's part of `returned_cost` of a use, in minor units: floor(cofunder_cost × returned /
    cost), the rule settlement applies (`promotions.merchant_part_returned`)."""
    if cost <= 0:
        return 0
    return proportional_floor(cofunder_cost, returned_cost, cost)


@retry_on_conflict
def cofunding_return(use: PromotionUse, *, returned_before: int, returned_after: int) -> LedgerTransaction | None:
    """Hands back the bank's part of the cost refunds returned on `use`, cumulatively (in the refund's transaction):
    its part of `returned_after` less its part of `returned_before`, merchant −, bank +, between the parties and in
    the currency of the co-funding transaction, as a reversal of it. The key names the use and the bank's part
    returned so far, so each step is posted once. None when the step hands back nothing, or nothing was posted for
    the use (a test-mode promotion, or a use consumed before co-funding was posted)."""
    if use.cofunder_cost <= 0:
        return None
    before = bank_part_returned(use.cofunder_cost, use.cost, returned_before)
    after = bank_part_returned(use.cofunder_cost, use.cost, returned_after)
    if after <= before:
        return None
    original = LedgerTransaction.objects.keyed(cofunding_key(use.pk))
    if original is None:
        return None
    meta = original.metadata
    currency = str(meta["currency"])
    # The parties the use's co-funding was posted between, whatever the promotion names now.
    bank = Party(OwnerKind.BANK, int(meta["cofunder_id"]))
    merchant = Party(OwnerKind.MERCHANT, int(meta["merchant_id"]))
    units = minor_units(after - before, currency)
    key = f"{cofunding_key(use.pk)}:returned:{after}"
    digest = request_hash(
        op="cofunding_return", use=use.pk, txn=original.pk, before=before, after=after, currency=currency
    )

    def work() -> LedgerTransaction:
        posting = begin(
            kind=Kind.REVERSAL,
            key=key,
            digest=digest,
            refs=clearing_pair(merchant, bank, currency),
            actor=None,
            reverses=original,
            metadata={
                "payment": use.payment,
                "promotion": meta.get("promotion"),
                "use": use.pk,
                "currency": currency,
                "reverses_kind": Kind.COFUNDING.value,
                "returned": after,  # the bank's part handed back so far, minor units
            },
        )
        obligation(posting, payer=merchant, payee=bank, units=units, currency=currency)
        return finish(posting)

    return keyed(LedgerTransaction, key, digest, work)
