"""The ledger's reads: balances across programs with their CNY value, keyset-paginated statements, points expiring."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.db import connections, router
from django.db.models import F, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from psycopg2 import sql

from core.crypto import decrypt
from core.errors import NotFound
from core.money import quantize
from core.partitions import archive_tables_of, with_archives
from members import selectors as members_selectors
from members.models import BindingStatus, Card, Cardholder, ConsentPurpose, PointsProgram, localized

from . import services
from .models import (
    Account,
    Benefit,
    BenefitQuotaUse,
    Entry,
    Hold,
    LedgerKey,
    LedgerTransaction,
    Lot,
    OwnerKind,
    Promotion,
    PromotionUse,
    Purpose,
    QuotaKind,
    Voucher,
)
from .services import today


@dataclass(frozen=True)
class ProgramBalance:
    program_id: int
    unit: str
    program_name: str
    bank_code: str
    posted: int
    held: int
    debt: int
    point_value_cny: Decimal
    expired: int = 0  # past their last valid day, not yet taken by the expiry job: not spendable

    @property
    def available(self) -> int:
        """What can be spent now: posted, less what is held, less the points past their date (which a spend would
        expire first; held points shield overdue lots, as in the expiry itself)."""
        free = self.posted - self.held
        return free - min(max(self.expired - self.held, 0), max(free, 0))

    @property
    def value_cny(self) -> Decimal:
        """What the available points are worth, to the fen."""
        return quantize(Decimal(self.available) * self.point_value_cny, 2)


def cardholder_balances(*, cardholder_id: int, on: dt.date | None = None) -> list[ProgramBalance]:
    """Every program the cardholder has points or a debt in (one query); value_cny is what the available points are
    worth at the program's point value. Points in lots past their last valid day (`on`: the business date) are
    counted out of what is available even before the daily job has expired them."""
    on = on or today()
    overdue = (
        Lot.objects.filter(account=OuterRef("pk"), remaining__gt=0, expires_on__lt=on)
        .values("account")
        .annotate(total=Sum("remaining"))
        .values("total")
    )
    accounts = (
        Account.objects.filter(
            owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder_id, purpose__in=[Purpose.POINTS, Purpose.DEBT]
        )
        .select_related("program__bank")
        .annotate(overdue=Coalesce(Subquery(overdue), 0))
        .order_by("unit", "purpose")
    )
    programs: dict[int, PointsProgram] = {}
    amounts: dict[int, list[int]] = {}  # program id → [posted, held, debt, expired]
    for account in accounts:
        program = account.program
        assert program is not None
        programs[program.pk] = program
        row = amounts.setdefault(program.pk, [0, 0, 0, 0])
        if account.purpose == Purpose.DEBT:
            row[2] = -account.posted
        else:
            row[0], row[1], row[3] = account.posted, account.held, int(account.overdue)  # type: ignore[attr-defined]
    return [
        ProgramBalance(
            program_id=program_id,
            unit=programs[program_id].unit_code,
            program_name=programs[program_id].local_name,
            bank_code=programs[program_id].bank.code,
            posted=posted,
            held=held,
            debt=debt,
            point_value_cny=programs[program_id].point_value_cny,
            expired=expired,
        )
        for program_id, (posted, held, debt, expired) in amounts.items()
    ]


def wallet_total_cny(balances: list[ProgramBalance]) -> Decimal:
    """What all the cardholder's available points are worth in CNY: each programme's available points × its point
    value, summed exactly and rounded once, to the fen, like each row's `value_cny`."""
    return quantize(sum((Decimal(row.available) * row.point_value_cny for row in balances), Decimal(0)), 2)


def exchange_programs(*, cardholder: Cardholder) -> list[PointsProgram]:
    """The active programmes the cardholder may exchange between: those of the banks they hold a card at and those
    they hold points in; no other (one query)."""
    wallets = Account.objects.filter(
        owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder.pk, purpose=Purpose.POINTS
    ).values("program_id")
    banks = members_selectors.cards_of(cardholder).values("bank_id")
    return list(
        PointsProgram.objects.filter(active=True)
        .filter(Q(pk__in=wallets) | Q(bank_id__in=banks))
        .select_related("bank")
        .order_by("bank__code", "unit_code")
    )


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    transaction_id: int
    kind: str
    amount: int
    balance_after: int
    created_at: dt.datetime
    source: str = ""  # the merchant, benefit or programme behind the movement (`name_sources`); empty: its kind
    payment: str = ""  # the payment's public id, when a payment is behind it

    @property
    def kind_label(self) -> str:
        return str(LedgerTransaction.Kind(self.kind).label)


@dataclass(frozen=True)
class StatementPage:
    lines: list[StatementLine]
    next_after: int | None
    # The archive tables of transactions the page was read with: what is behind its lines is read from them too.
    transaction_archives: tuple[str, ...] = ()


# An account's entries a page at a time, newest or oldest first, with their transaction's kind and time; keyset on
# each month's (account, id) index, an archived month's too. The entries' columns are named: an archive table keeps
# the columns its month had.
_STATEMENT_ENTRY_COLUMNS = ("id", "transaction_id", "account_id", "amount", "balance_after")
_STATEMENT_TRANSACTION_COLUMNS = ("id", "kind", "created_at")


def _ledger_sources(
    entry_columns: tuple[str, ...], transaction_columns: tuple[str, ...]
) -> tuple[sql.Composable, sql.Composable, tuple[str, ...]]:
    """FROM sources of the ledger's entries and of its transactions, each with its archived months (one query for
    the two: a transaction and its entries stay the ledger's once their month is archived), and the transactions'
    archive tables."""
    entries, transactions = Entry._meta.db_table, LedgerTransaction._meta.db_table
    archives = archive_tables_of([entries, transactions])
    return (
        sql.SQL(with_archives(entries, entry_columns, archives[entries])),
        sql.SQL(with_archives(transactions, transaction_columns, archives[transactions])),
        tuple(archives[transactions]),
    )


_SQL_STATEMENT = """
    SELECT e.id, e.transaction_id, t.kind, e.amount, e.balance_after, t.created_at
    FROM {entries} e
    INNER JOIN {transactions} t ON e.transaction_id = t.id
    WHERE e.account_id = %(account)s {after}
    ORDER BY e.id {direction}
    LIMIT %(limit)s
"""


def account_statement(
    *, account_id: int, after_id: int | None = None, limit: int = 50, newest_first: bool = False
) -> StatementPage:
    """Entries oldest first (or newest first, as the portal shows them) with the running balance; keyset pagination on
    (account, id), so a page costs the same at any depth. `after_id` is the previous page's `next_after`. An archived
    month's entries are the account's still (docs/scaling.md, "Partitioning by month"): two queries, the archived
    months and the page."""
    using = router.db_for_read(Entry)
    after = "" if after_id is None else "AND e.id < %(after)s" if newest_first else "AND e.id > %(after)s"
    entries, transactions, archived = _ledger_sources(_STATEMENT_ENTRY_COLUMNS, _STATEMENT_TRANSACTION_COLUMNS)
    query = sql.SQL(_SQL_STATEMENT).format(
        entries=entries,
        transactions=transactions,
        after=sql.SQL(after),
        direction=sql.SQL("DESC" if newest_first else "ASC"),
    )
    with connections[using].cursor() as cursor:
        cursor.execute(query, {"account": account_id, "after": after_id, "limit": limit + 1})
        rows = cursor.fetchall()
    lines = [StatementLine(*row) for row in rows[:limit]]
    next_after = lines[-1].entry_id if len(rows) > limit else None
    return StatementPage(lines=lines, next_after=next_after, transaction_archives=archived)


# --- what is behind a movement ---------------------------------------------------------------------------------------

# Payments live to the right of rewards: the ledger knows a payment by its public id (in the metadata of the earn, or
# of the hold a points payment posts), and payments, once installed, tells it the merchants' names.
PaymentMerchantNames = Callable[[list[str]], dict[str, str]]
_payment_merchant_names: PaymentMerchantNames | None = None


def register_payment_merchant_names(provider: PaymentMerchantNames | None) -> None:
    """Installs the function that names the merchant of each payment (payment public id → name, one query)."""
    global _payment_merchant_names
    _payment_merchant_names = provider


EARN_SOURCES = {
    "campaign": _lazy("Campaign bonus"),
    "operator": _lazy("Credited by the bank"),
}


@dataclass(frozen=True)
class _Behind:
    """What a transaction points at: a payment, a benefit, another programme, or nothing but its kind."""

    payment: str = ""
    benefit_id: int | None = None
    program_id: int | None = None
    label: str = ""


def _behind(kind: str, metadata: dict[str, Any], hold_metadata: dict[str, Any] | None, program_id: int) -> _Behind:
    if kind in (LedgerTransaction.Kind.EARN, LedgerTransaction.Kind.EARN_BATCH):
        if metadata.get("payment"):
            return _Behind(payment=str(metadata["payment"]))
        label = EARN_SOURCES.get(str(metadata.get("source", "")))
        return _Behind(label=str(label) if label is not None else "")
    if kind == LedgerTransaction.Kind.HOLD_POST and hold_metadata and hold_metadata.get("payment"):
        return _Behind(payment=str(hold_metadata["payment"]))
    if kind == LedgerTransaction.Kind.SPEND and metadata.get("benefit_id"):
        return _Behind(benefit_id=int(metadata["benefit_id"]))
    if kind == LedgerTransaction.Kind.EXCHANGE:
        source, target = metadata.get("program_id"), metadata.get("to_program_id")
        other = target if source == program_id else source
        return _Behind(program_id=int(other)) if other is not None else _Behind()
    return _Behind()


def _json(value: str | None) -> dict[str, Any]:
    """A jsonb column read by a raw query (Django's connection hands it over as text)."""
    return json.loads(value) if value else {}


# Each transaction of a page, what it reverses, and the holds they posted; an archived month's too.
_BEHIND_TRANSACTION_COLUMNS = ("id", "kind", "metadata", "reverses_id")
_SQL_BEHIND = """
    SELECT t.id, t.kind, t.metadata, h.metadata, x.kind, x.metadata, xh.metadata
    FROM {transactions} t
    LEFT OUTER JOIN {holds} h ON h.transaction_id = t.id
    LEFT OUTER JOIN {transactions} x ON x.id = t.reverses_id
    LEFT OUTER JOIN {holds} xh ON xh.transaction_id = x.id
    WHERE t.id = ANY(%(ids)s::bigint[])
"""


def name_sources(page: StatementPage, *, program_id: int) -> StatementPage:
    """The page with each line naming what is behind it: an earn or its reversal the payment's merchant, a
    redemption the benefit, an exchange the other programme (of the one the page is in); an expiry or an
    adjustment its kind alone. Set-based: one query for the transactions (the archived months' the page was read
    with too), then one per kind of name the page needs (the merchants, the benefits, the programmes), whatever the
    page's length."""
    ids = {line.transaction_id for line in page.lines}
    if not ids:
        return page
    # An archived month's lines are named too, from the archive tables the page was read with.
    transactions = sql.SQL(
        with_archives(LedgerTransaction._meta.db_table, _BEHIND_TRANSACTION_COLUMNS, page.transaction_archives)
    )
    query = sql.SQL(_SQL_BEHIND).format(transactions=transactions, holds=sql.Identifier(Hold._meta.db_table))
    with connections[router.db_for_read(LedgerTransaction)].cursor() as cursor:
        cursor.execute(query, {"ids": sorted(ids)})
        rows = cursor.fetchall()
    behind: dict[int, _Behind] = {}
    for pk, kind, metadata, hold_meta, reversed_kind, reversed_meta, reversed_hold_meta in rows:
        if kind == LedgerTransaction.Kind.REVERSAL and reversed_kind:
            behind[pk] = _behind(reversed_kind, _json(reversed_meta), _json(reversed_hold_meta), program_id)
        else:
            behind[pk] = _behind(kind, _json(metadata), _json(hold_meta), program_id)
    payments = sorted({b.payment for b in behind.values() if b.payment})
    merchants = _payment_merchant_names(payments) if payments and _payment_merchant_names is not None else {}
    benefit_ids = {b.benefit_id for b in behind.values() if b.benefit_id is not None}
    benefits = (
        {benefit.pk: benefit.title for benefit in Benefit.objects.filter(pk__in=benefit_ids)} if benefit_ids else {}
    )
    program_ids = {b.program_id for b in behind.values() if b.program_id is not None}
    programs = (
        {program.pk: program.local_name for program in PointsProgram.objects.filter(pk__in=program_ids)}
        if program_ids
        else {}
    )
    lines = []
    for line in page.lines:
        found = behind.get(line.transaction_id, _Behind())
        if found.payment:
            source = merchants.get(found.payment, found.payment)
        elif found.benefit_id is not None:
            source = benefits.get(found.benefit_id, "")
        elif found.program_id is not None:
            source = programs.get(found.program_id, "")
        else:
            source = found.label
        lines.append(replace(line, source=source, payment=found.payment))
    return replace(page, lines=lines)


@dataclass(frozen=True)
class PaymentMovement:
    """A payment's points in one of the cardholder's programmes, per ledger transaction: earned (+), paid with or
    reversed (−)."""

    transaction_id: int
    kind: str
    program_name: str
    program_name_en: str
    amount: int
    created_at: dt.datetime

    @property
    def kind_label(self) -> str:
        return str(LedgerTransaction.Kind(self.kind).label)

    @property
    def program(self) -> str:
        return localized(self.program_name, self.program_name_en)


# The entries behind one payment in a cardholder's points and debt accounts: the transactions keyed by the payment
# (its earn, its promotions' points: the keys' table, since the transactions' table holds no key index, being
# partitioned), those it names, and their reversals; an archived month's entries too. `a.spread = e.spread` joins the
# entries to their accounts shard by shard on Citus.
_PAYMENT_ENTRY_COLUMNS = ("id", "transaction_id", "account_id", "spread", "amount")
_PAYMENT_TRANSACTION_COLUMNS = ("id", "kind", "created_at", "reverses_id")
_SQL_PAYMENT_KEYED = """
    SELECT k.transaction_id FROM {keys} k
    WHERE k.idempotency_key = %(earn_key)s OR k.idempotency_key IN (
        SELECT 'promotion-use:' || u.id::text || ':points' FROM {uses} u WHERE u.payment = %(payment)s)
"""
_SQL_PAYMENT_MOVEMENTS = """
    SELECT e.transaction_id, t.kind, pr.name, pr.name_en, e.amount, t.created_at
    FROM {entries} e
    INNER JOIN {transactions} t ON e.transaction_id = t.id
    INNER JOIN {accounts} a ON e.account_id = a.id
    LEFT OUTER JOIN {programs} pr ON a.program_id = pr.id
    WHERE (e.transaction_id IN ({keyed}) OR e.transaction_id = ANY(%(ids)s::bigint[])
           OR t.reverses_id IN ({keyed}) OR t.reverses_id = ANY(%(ids)s::bigint[]))
      AND a.owner_id = %(cardholder)s AND a.owner_kind = %(owner_kind)s AND a.purpose = ANY(%(purposes)s)
      AND a.spread = e.spread
    ORDER BY e.transaction_id, e.id
"""


def payment_movements(*, cardholder_id: int, payment_ref: str, transaction_ids: list[int]) -> list[PaymentMovement]:
    """The points movements behind one payment in the cardholder's wallets, oldest first: its earn, its promotions'
    points, the points it was paid with (`transaction_ids`, which payments keeps), and every reversal of those (a
    refund's, a void's), an archived month's too. Two queries (the archived months, the entries); the wallet's and
    the points debt's entries of one transaction are summed."""
    keyed = sql.SQL(_SQL_PAYMENT_KEYED).format(
        keys=sql.Identifier(LedgerKey._meta.db_table), uses=sql.Identifier(PromotionUse._meta.db_table)
    )
    entries, transactions, _archived = _ledger_sources(_PAYMENT_ENTRY_COLUMNS, _PAYMENT_TRANSACTION_COLUMNS)
    query = sql.SQL(_SQL_PAYMENT_MOVEMENTS).format(
        keyed=keyed,
        entries=entries,
        transactions=transactions,
        accounts=sql.Identifier(Account._meta.db_table),
        programs=sql.Identifier(PointsProgram._meta.db_table),
    )
    params: dict[str, Any] = {
        "earn_key": f"payment:{payment_ref}:earn", "payment": payment_ref, "ids": list(transaction_ids),
        "cardholder": cardholder_id, "owner_kind": OwnerKind.CARDHOLDER.value,
        "purposes": [Purpose.POINTS.value, Purpose.DEBT.value],
    }  # fmt: skip
    with connections[router.db_for_read(Entry)].cursor() as cursor:
        cursor.execute(query, params)
        entries = cursor.fetchall()
    movements: dict[tuple[int, str], list[Any]] = {}
    for txn, kind, name, name_en, amount, created_at in entries:
        row = movements.setdefault((txn, name), [txn, kind, name, name_en or "", 0, created_at])
        row[4] += amount
    return [PaymentMovement(*row) for row in movements.values() if row[4]]


@dataclass(frozen=True)
class Expiring:
    unit: str
    program_id: int
    points: int
    first_date: dt.date


def points_expiring(*, cardholder_id: int, within_days: int, on: dt.date) -> list[Expiring]:
    """Points in lots whose last valid day falls in the next `within_days` days, per program (one query)."""
    rows = (
        Lot.objects.filter(
            account__owner_kind=OwnerKind.CARDHOLDER,
            account__owner_id=cardholder_id,
            remaining__gt=0,
            expires_on__gte=on,
            expires_on__lte=on + dt.timedelta(days=within_days),
        )
        .values("program_id", "account__unit")
        .annotate(points=Sum("remaining"), first=Min("expires_on"))
        .order_by("account__unit")
    )
    return [Expiring(r["account__unit"], r["program_id"], int(r["points"]), r["first"]) for r in rows]


def cardholder_wallet(*, cardholder_id: int, program_id: int) -> Account | None:
    """The cardholder's points account in one program, if they have one (a read: nothing is created)."""
    return (
        Account.objects.select_related("program__bank")
        .filter(owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder_id, purpose=Purpose.POINTS, program_id=program_id)
        .first()
    )


# --- benefits and vouchers (docs/benefits.md) ------------------------------------------------------------------------


@dataclass(frozen=True)
class BenefitOffer:
    """A benefit the cardholder may redeem now: with which of their cards, and how many more times (None: no limit
    but the stock)."""

    benefit: Benefit
    card_ids: list[int]
    quota_left: int | None
    stock_left: int | None


def _on_offer(now: dt.datetime) -> QuerySet[Benefit]:
    return (
        Benefit.objects.filter(status=Benefit.Status.PUBLISHED, valid_from__lte=now, valid_until__gt=now)
        .filter(Q(stock_left__isnull=True) | Q(stock_left__gt=0))
        .select_related("price_program", "merchant")
        .prefetch_related("eligible_banks", "eligible_products", "stores")
        .order_by("id")
    )


def benefits_for(
    *, cardholder_id: int, now: dt.datetime | None = None, benefit_id: int | None = None
) -> list[BenefitOffer]:
    """The published benefits on offer now that the cardholder may redeem with one of their active cards, with quota
    and stock left (a benefit whose quota this cardholder has used up is left out); `benefit_id`: that one only. Six
    queries whatever the size of the catalogue: cards, benefits with their eligibility lists and stores, and the
    quota counters."""
    now = now or timezone.now()
    on_offer = _on_offer(now) if benefit_id is None else _on_offer(now).filter(pk=benefit_id)
    periods = services.quota_periods(today())
    cards = list(
        Card.objects.select_related("product").filter(cardholder_id=cardholder_id, status=BindingStatus.ACTIVE)
    )
    if not cards:
        return []
    used: dict[tuple[int, str, int], int] = {}
    counters = BenefitQuotaUse.objects.filter(
        Q(kind=QuotaKind.HOLDER_MONTH, owner_id=cardholder_id, period=periods[QuotaKind.HOLDER_MONTH])
        | Q(kind=QuotaKind.HOLDER_YEAR, owner_id=cardholder_id, period=periods[QuotaKind.HOLDER_YEAR])
        | Q(kind=QuotaKind.CARD, owner_id__in=[card.pk for card in cards])
    )
    for counted, kind, owner_id, count in counters.values_list("benefit_id", "kind", "owner_id", "used"):
        used[(counted, kind, owner_id)] = count
    offers = []
    for benefit in on_offer:
        eligible = [card for card in cards if services.card_eligible(benefit, card)]
        limits = services.quota_limits(benefit)
        lefts: list[int] = []
        for kind in (QuotaKind.HOLDER_MONTH, QuotaKind.HOLDER_YEAR):
            limit = limits[kind]
            if limit is not None:
                lefts.append(max(limit - used.get((benefit.pk, kind, cardholder_id), 0), 0))
        card_limit = limits[QuotaKind.CARD]
        if card_limit is not None:
            eligible = [c for c in eligible if used.get((benefit.pk, QuotaKind.CARD, c.pk), 0) < card_limit]
            lefts.append(sum(card_limit - used.get((benefit.pk, QuotaKind.CARD, c.pk), 0) for c in eligible))
        quota_left = min(lefts) if lefts else None
        if not eligible or quota_left == 0:
            continue
        offers.append(BenefitOffer(benefit, [card.pk for card in eligible], quota_left, benefit.stock_left))
    return offers


def benefit_quote(*, benefit_id: int, points: dict[int, int | None]) -> services.BenefitQuote:
    """What each chosen programme pays for the benefit (the same pricing the redemption applies): `points` maps a
    programme id to its points, or to None for the one programme that pays the rest of a CNY price. Raises
    `NotFound` or `ValidationFailed` (param "points") as the redemption would."""
    benefit = Benefit.objects.filter(pk=benefit_id, status=Benefit.Status.PUBLISHED).first()
    if benefit is None:
        raise NotFound(_("No such benefit."), param="benefit")
    return services.benefit_price(benefit=benefit, points=points)


@dataclass(frozen=True)
class VoucherView:
    voucher: Voucher
    code: str
    qr_payload: str


def vouchers_of(*, cardholder_id: int, limit: int = 100) -> list[VoucherView]:
    """The cardholder's own vouchers, newest first, with their code and QR payload (for them only)."""
    rows = (
        Voucher.objects.filter(cardholder_id=cardholder_id)
        .select_related("benefit", "benefit__merchant", "card", "redeemed_store")
        .order_by("-id")[:limit]
    )
    views = []
    for voucher in rows:
        code = decrypt(voucher.code_encrypted)
        views.append(VoucherView(voucher, code, services.qr_payload(code)))
    return views


def card_privileges(*, card: Card, now: dt.datetime | None = None) -> list[Benefit]:
    """The free benefits on offer now that this card is eligible for (its product's and tier's privileges)."""
    return [benefit for benefit in privileges_on_offer(now=now) if services.card_eligible(benefit, card)]


def privileges_on_offer(*, now: dt.datetime | None = None) -> QuerySet[Benefit]:
    """The free benefits (card privileges) on offer now, with their eligibility lists: four queries when read
    (`services.product_eligible` tells which products they belong to)."""
    return _on_offer(now or timezone.now()).filter(pricing=Benefit.Pricing.FREE)


def benefit_on_offer(*, benefit_id: int, now: dt.datetime | None = None) -> Benefit:
    """One published benefit on offer now, with its eligibility lists and stores (for its page); `NotFound` for any
    other id, a draft, a withdrawn benefit or one outside its window."""
    benefit = _on_offer(now or timezone.now()).filter(pk=benefit_id).first()
    if benefit is None:
        raise NotFound(_("No such benefit."), param="benefit")
    return benefit


def benefit_published(*, benefit_id: int) -> Benefit:
    """One published benefit, on offer or not (sold out, out of its window): what a redemption names, so that the
    service decides and a replayed request still finds its first voucher. `NotFound` for any other id."""
    benefit = Benefit.objects.select_related("price_program").filter(pk=benefit_id).first()
    if benefit is None or benefit.status != Benefit.Status.PUBLISHED:
        raise NotFound(_("No such benefit."), param="benefit")
    return benefit


def voucher_cancel_until(voucher: Voucher) -> dt.datetime | None:
    """Until when its holder may cancel an issued voucher (`voucher_cancel` decides; this is what the page shows):
    the end of the benefit's cancel window, or the voucher's expiry if sooner; None when it cannot be cancelled."""
    hours = voucher.benefit.cancel_window_hours
    if voucher.state != Voucher.State.ISSUED or not hours:
        return None
    return min(voucher.issued_at + dt.timedelta(hours=hours), voucher.expires_at)


# --- promotions on offer to a cardholder (the portal's offers page) --------------------------------------------------


@dataclass(frozen=True)
class PromotionOffer:
    promotion: Promotion
    cards: list[Card]  # the cardholder's active cards it applies to


@dataclass(frozen=True)
class MerchantOffers:
    merchant: Any
    offers: list[PromotionOffer]


@dataclass(frozen=True)
class CardholderOffers:
    for_everyone: list[MerchantOffers]
    picked: list[MerchantOffers]  # segment-targeted offers matching the cardholder's tags (empty without consent)
    personalised: bool  # whether the cardholder consents to personalised offers


def _card_fits(promotion: Promotion, card: Card) -> bool:
    banks = {bank.pk for bank in promotion.card_banks.all()}
    products = {product.pk for product in promotion.card_products.all()}
    return (
        (not banks or card.bank_id in banks)
        and (not products or card.product_id in products)
        and (not promotion.card_tiers or card.product.tier in promotion.card_tiers)
    )


def _by_merchant(offers: list[PromotionOffer]) -> list[MerchantOffers]:
    grouped: dict[int, MerchantOffers] = {}
    for offer in offers:
        merchant = offer.promotion.merchant
        grouped.setdefault(merchant.pk, MerchantOffers(merchant, [])).offers.append(offer)
    return sorted(grouped.values(), key=lambda group: group.merchant.display_name)


def offers_for_cardholder(*, cardholder: Cardholder, now: dt.datetime | None = None) -> CardholderOffers:
    """The merchants' live promotions on now that apply to at least one of the cardholder's active cards: active,
    within their schedule, with budget and uses left, merchant-funded or approved by their co-funding bank. Offers
    with no segment are for everyone; a segment-targeted one is picked for this cardholder only while they consent
    to personalised offers and share one of its tags. Six queries whatever the number of promotions: consent,
    cards, promotions (with merchant and reward voucher) and their stores, card banks and card products."""
    now = now or timezone.now()
    personalised = members_selectors.consent_granted(cardholder, ConsentPurpose.PERSONALISED_OFFERS)
    tags = set(cardholder.segment_tags or ()) if personalised else set()
    cards = list(
        Card.objects.select_related("bank", "product")
        .filter(cardholder=cardholder, status=BindingStatus.ACTIVE)
        .order_by("bank__code", "pk")
    )
    if not cards:
        return CardholderOffers([], [], personalised)
    promotions = (
        Promotion.objects.filter(
            livemode=True,
            status=Promotion.Status.ACTIVE,
            starts_at__lte=now,
            ends_at__gt=now,
            committed__lt=F("budget"),
        )
        .filter(Q(cofunder__isnull=True) | Q(cofunding=Promotion.Cofunding.APPROVED))
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        .select_related("merchant", "reward_benefit")
        .prefetch_related("stores", "card_banks", "card_products")
        .order_by("merchant_id", "-priority", "ends_at", "pk")
    )
    everyone: list[PromotionOffer] = []
    picked: list[PromotionOffer] = []
    for promotion in promotions:
        targeted = bool(promotion.segment_tags)
        if targeted and not (tags & set(promotion.segment_tags)):
            continue
        fitting = [card for card in cards if _card_fits(promotion, card)]
        if not fitting:
            continue
        (picked if targeted else everyone).append(PromotionOffer(promotion, fitting))
    return CardholderOffers(_by_merchant(everyone), _by_merchant(picked), personalised)


# --- promotions, as the merchant API reads them: the calling merchant's, of its key's mode --------------------------


def promotion_list(*, merchant_id: int, livemode: bool, status: str | None = None) -> QuerySet[Promotion]:
    promotions = services.promotions_with_lists(Promotion.objects.filter(merchant_id=merchant_id, livemode=livemode))
    return promotions.filter(status=status) if status else promotions


def promotion_get(*, merchant_id: int, livemode: bool, promotion_id: str) -> Promotion:
    """One of the merchant's promotions of this mode; `NotFound` for another merchant's, another mode's, or none."""
    promotion = promotion_list(merchant_id=merchant_id, livemode=livemode).filter(public_id=promotion_id).first()
    if promotion is None:
        raise NotFound(_("No such promotion."), param="id")
    return promotion
