"""The cardholder's unified statement (统一账单): reads only.

Every payment and every refund on the cardholder's cards and linked balances, whatever the bank, as one list newest
first. A line is a payment (what was charged, the points earned and paid with, the promotions applied) or a refund
(what came back, the points reversed). Both come from one `UNION ALL` of two queries, so a page costs one query at
any depth (keyset: a page starts after the previous page's last line): the payments are the first rows of their
(cardholder, -created_at, -id) index, the refunds those of the cardholder's payment ids (an index-only scan of that
index) that have any. The CSV export streams the same query through a server-side cursor. Test-mode payments (a
merchant's sandbox) moved no money and are not on it.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import CharField, F, IntegerField, JSONField, Q, QuerySet, Value
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from core.calendar import SHANGHAI
from core.money import exponent, format_minor, to_money
from core.partitions import archive_tables, with_archives
from core.selectors import rows_streamed
from members.models import Cardholder, SpendCategory, localized
from merchants.models import Event
from rewards import selectors as rewards_selectors

from . import selectors
from .models import PaymentIntent, Refund

PAYMENTS = PaymentIntent._meta.db_table

PAGE_SIZE = 25
PAYMENT, REFUND = "payment", "refund"


@dataclass(frozen=True)
class StatementFilters:
    """What the cardholder narrows the statement to; empty fields narrow nothing."""

    card_id: int | None = None
    account_id: int | None = None
    bank_id: int | None = None
    month: dt.date | None = None  # the first day of the month, in Asia/Shanghai
    category: str = ""
    search: str = ""


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last line's time, kind and id (the statement's order, descending)."""

    at: dt.datetime
    kind: str
    id: int

    def encode(self) -> str:
        micros = int(self.at.timestamp()) * 1_000_000 + self.at.microsecond
        return f"{micros}-{self.kind[0]}{self.id}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """The cursor a page link carries, or None for anything that is not one."""
        micros, _sep, rest = (text or "").partition("-")
        kinds = {"p": PAYMENT, "r": REFUND}
        if not (micros.isascii() and micros.isdigit() and len(micros) <= 18 and rest[:1] in kinds):
            return None
        number = rest[1:]
        if not (number.isascii() and number.isdigit() and len(number) <= 18):
            return None
        seconds, fraction = divmod(int(micros), 1_000_000)
        try:
            at = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=fraction)
        except (OverflowError, OSError, ValueError):
            return None
        return cls(at, kinds[rest[0]], int(number))


@dataclass(frozen=True)
class StatementLine:
    kind: str
    id: int
    at: dt.datetime
    payment: str
    refund: str
    merchant: str
    bank_zh: str
    bank_en: str
    card_last4: str
    account_number: str
    currency: str
    amount: int  # minor units, positive; a refund's comes back to the cardholder
    points: int  # earned by a payment, reversed by a refund
    points_used: int
    discount: int
    promotions: list[dict[str, Any]]
    status: str
    category: str

    @property
    def is_refund(self) -> bool:
        return self.kind == REFUND

    @property
    def cursor(self) -> str:
        return Cursor(self.at, self.kind, self.id).encode()

    @property
    def bank(self) -> str:
        return localized(self.bank_zh or "", self.bank_en or "")

    @property
    def source(self) -> str:
        """The card's last four digits, or the linked account's masked number."""
        return f"•••• {self.card_last4}" if self.card_last4 else self.account_number or ""

    @property
    def signed_amount(self) -> int:
        return -self.amount if self.is_refund else self.amount

    @property
    def amount_display(self) -> str:
        return format_minor(self.signed_amount, self.currency)

    @property
    def discount_display(self) -> str:
        return format_minor(self.discount, self.currency) if self.discount else ""

    @property
    def points_display(self) -> str:
        """Points earned (+), reversed by a refund (−), paid with (−)."""
        parts = []
        if self.points:
            parts.append(f"-{self.points}" if self.is_refund else f"+{self.points}")
        if self.points_used:
            parts.append(_("%(points)d used") % {"points": self.points_used})
        return " · ".join(parts)

    @property
    def promotion_names(self) -> list[str]:
        return [str(line.get("name", "")) for line in self.promotions if line.get("name")]

    @property
    def status_label(self) -> str:
        choices = Refund.Status if self.is_refund else PaymentIntent.Status
        try:
            return str(choices(self.status).label)
        except ValueError:
            return self.status

    @property
    def kind_label(self) -> str:
        return _("Refund") if self.is_refund else _("Payment")

    @property
    def category_label(self) -> str:
        try:
            return str(SpendCategory(self.category).label)
        except ValueError:
            return self.category


@dataclass(frozen=True)
class StatementPage:
    lines: list[StatementLine]
    next_after: str | None  # the cursor of the next (older) page
    disputes: dict[str, list[selectors.CardholderDispute]] = field(default_factory=dict)  # by payment id

    @property
    def rows(self) -> list[tuple[StatementLine, list[selectors.CardholderDispute]]]:
        """Each line with its payment's disputes (a refund line shows none: they are its payment's)."""
        return [(line, [] if line.is_refund else self.disputes.get(line.payment, [])) for line in self.lines]


# --- the query ---------------------------------------------------------------------------------------------------

# The columns of both halves of the union, in one order; `*_path` is the payment's field as the half reaches it.
_COLUMNS = (
    "line_kind", "line_id", "line_at", "line_payment", "line_refund", "line_merchant", "line_bank_zh", "line_bank_en",
    "line_last4", "line_account", "line_currency", "line_amount", "line_points", "line_points_used", "line_discount",
    "line_promotions", "line_status", "line_category",
)  # fmt: skip


def _month_range(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(month.replace(day=1), dt.time(0), tzinfo=SHANGHAI)
    following = (month.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return start, dt.datetime.combine(following, dt.time(0), tzinfo=SHANGHAI)


def _payment_filters(filters: StatementFilters, path: str) -> Q:
    """The filters, on the payment reached through `path` ("" from a payment, "intent__" from a refund)."""
    q = Q()
    if filters.card_id is not None:
        q &= Q(**{f"{path}card_id": filters.card_id})
    if filters.account_id is not None:
        q &= Q(**{f"{path}linked_account_id": filters.account_id})
    if filters.bank_id is not None:
        q &= Q(**{f"{path}issuer_id": filters.bank_id})
    if filters.category:
        q &= Q(**{f"{path}spend_category": filters.category})
    if filters.search:
        term = filters.search
        found = (
            Q(**{f"{path}merchant__display_name__icontains": term})
            | Q(**{f"{path}public_id": term})
            | Q(**{f"{path}merchant_reference": term})
        )
        if path:  # a refund is also found by its own id
            found |= Q(public_id=term)
        q &= found
    return q


def _before(cursor: Cursor | None, kind: str) -> Q:
    """The rows of one half that come after `cursor` in the statement's order (time, kind, id — descending)."""
    if cursor is None:
        return Q()
    if kind == cursor.kind:
        return Q(created_at__lt=cursor.at) | Q(created_at=cursor.at, id__lt=cursor.id)
    # At the same time, refunds come before payments.
    return Q(created_at__lte=cursor.at) if kind < cursor.kind else Q(created_at__lt=cursor.at)


def _halves(
    cardholder: Cardholder, filters: StatementFilters, cursor: Cursor | None
) -> tuple[QuerySet[Any, Any], QuerySet[Any, Any]]:
    payments = PaymentIntent.objects.filter(cardholder=cardholder, livemode=True)
    # A refund is found through its payment's id in the statement index (an index-only scan of the cardholder's
    # payments), not by joining the payments first: only the payments that have a refund are read.
    own = PaymentIntent.objects.filter(cardholder=cardholder).values("id")
    refunds = Refund.objects.filter(intent_id__in=own, intent__livemode=True)
    payments = payments.filter(_payment_filters(filters, ""), _before(cursor, PAYMENT))
    refunds = refunds.filter(_payment_filters(filters, "intent__"), _before(cursor, REFUND))
    if filters.month is not None:
        start, end = _month_range(filters.month)
        payments = payments.filter(created_at__gte=start, created_at__lt=end)
        refunds = refunds.filter(created_at__gte=start, created_at__lt=end)
    text = CharField()
    payment_values = payments.values(
        line_kind=Value(PAYMENT, output_field=text),
        line_id=F("id"),
        line_at=F("created_at"),
        line_payment=F("public_id"),
        line_refund=Value("", output_field=text),
        line_merchant=F("merchant__display_name"),
        line_bank_zh=F("issuer__name_zh"),
        line_bank_en=F("issuer__name_en"),
        line_last4=F("card__last4"),
        line_account=F("linked_account__masked_number"),
        line_currency=F("currency"),
        line_amount=F("amount"),
        line_points=F("points_earned"),
        line_points_used=F("points_used"),
        line_discount=F("discount_amount"),
        line_promotions=F("promotions"),
        line_status=F("status"),
        line_category=F("spend_category"),
    )
    refund_values = refunds.values(
        line_kind=Value(REFUND, output_field=text),
        line_id=F("id"),
        line_at=F("created_at"),
        line_payment=F("intent__public_id"),
        line_refund=F("public_id"),
        line_merchant=F("intent__merchant__display_name"),
        line_bank_zh=F("intent__issuer__name_zh"),
        line_bank_en=F("intent__issuer__name_en"),
        line_last4=F("intent__card__last4"),
        line_account=F("intent__linked_account__masked_number"),
        line_currency=F("intent__currency"),
        line_amount=F("amount"),
        line_points=F("points_reversed"),
        line_points_used=Value(0, output_field=IntegerField()),
        line_discount=Value(0, output_field=IntegerField()),
        line_promotions=Value([], output_field=JSONField()),
        line_status=F("status"),
        line_category=F("intent__spend_category"),
    )
    return payment_values, refund_values


_ORDER = ("-line_at", "-line_kind", "-line_id")


def _line(row: dict[str, Any]) -> StatementLine:
    return StatementLine(*(row[name] for name in _COLUMNS))


def statement_page(
    *, cardholder: Cardholder, filters: StatementFilters, after: Cursor | None = None, limit: int = PAGE_SIZE
) -> StatementPage:
    """A page of the statement, newest first, after `after` (the previous page's `next_after`): one query, each half
    reading at most a page of its index, and one for the page's payments' disputes."""
    payments, refunds = _halves(cardholder, filters, after)
    payments = payments.order_by("-created_at", "-id")[: limit + 1]
    refunds = refunds.order_by("-created_at", "-id")[: limit + 1]
    rows = list(payments.union(refunds, all=True).order_by(*_ORDER)[: limit + 1])
    lines = [_line(row) for row in rows[:limit]]
    disputes = selectors.disputes_for_payments(cardholder, {line.payment for line in lines}) if lines else {}
    return StatementPage(lines=lines, next_after=lines[-1].cursor if len(rows) > limit else None, disputes=disputes)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula (a merchant's name is the merchant's to choose)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _decimal(minor: int, currency: str) -> str:
    places = exponent(currency)
    return f"{to_money(minor, currency).amount:.{places}f}" if places else str(minor)


def statement_csv(
    *, cardholder: Cardholder, filters: StatementFilters, language: str, chunk_size: int = 2000
) -> Iterator[str]:
    """The whole filtered statement as CSV, a header row first, newest first, read through a server-side cursor in
    chunks: any length streams in constant memory (one query). Times in Asia/Shanghai; amounts signed (a refund is
    negative) in the currency's units, exact; labels in `language` (the rows are written after the view returned,
    when the request's language may no longer be the active one)."""
    with translation.override(language):
        yield from _csv_rows(cardholder, filters, chunk_size)


def _csv_rows(cardholder: Cardholder, filters: StatementFilters, chunk_size: int) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            _("Time"), _("Type"), _("Payment"), _("Refund"), _("Merchant"), _("Category"), _("Bank"),
            _("Card or account"), _("Currency"), _("Amount"), _("Discount"), _("Points earned or reversed"),
            _("Points used"), _("Promotions"), _("Status"),
        ]
    )  # fmt: skip
    payments, refunds = _halves(cardholder, filters, None)
    rows = payments.union(refunds, all=True).order_by(*_ORDER)
    for row in rows_streamed(rows, chunk_size=chunk_size):
        line = _line(row)
        points = -line.points if line.is_refund else line.points
        yield writer.writerow(
            [
                timezone.localtime(line.at, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
                line.kind_label,
                line.payment,
                line.refund,
                _cell(line.merchant),
                line.category_label,
                _cell(line.bank),
                line.source,
                line.currency,
                _decimal(line.signed_amount, line.currency),
                _decimal(line.discount, line.currency),
                points,
                line.points_used,
                _cell("; ".join(line.promotion_names)),
                line.status_label,
            ]
        )


# --- one payment, in detail -------------------------------------------------------------------------------------

EVENT_LABELS = {
    "payment.created": _lazy("created"),
    "payment.processing": _lazy("sent to the channel"),
    "payment.requires_capture": _lazy("authorised, awaiting capture"),
    "payment.succeeded": _lazy("paid"),
    "payment.failed": _lazy("failed"),
    "payment.canceled": _lazy("canceled"),
    "payment.authorization_expired": _lazy("authorisation expired"),
    "payment.orphan_reversed": _lazy("reversed at the channel"),
    "payment.review_closed": _lazy("risk review closed"),
    "refund.pending": _lazy("refund requested"),
    "refund.succeeded": _lazy("refunded"),
    "refund.failed": _lazy("refund failed"),
}


@dataclass(frozen=True)
class StateChange:
    at: dt.datetime
    type: str
    object_id: str

    @property
    def label(self) -> str:
        label = EVENT_LABELS.get(self.type)
        return str(label) if label is not None else self.type


@dataclass(frozen=True)
class PaymentDetail:
    payment: PaymentIntent
    refunds: list[Refund]
    movements: list[rewards_selectors.PaymentMovement]
    history: list[StateChange] = field(default_factory=list)
    disputes: list[selectors.CardholderDispute] = field(default_factory=list)

    @property
    def bank(self) -> str:
        return self.payment.issuer.local_name if self.payment.issuer is not None else ""

    @property
    def source(self) -> str:
        if self.payment.card is not None:
            return f"•••• {self.payment.card.last4}"
        return self.payment.linked_account.masked_number if self.payment.linked_account is not None else ""

    def money(self, minor: int) -> str:
        return format_minor(minor, self.payment.currency)

    @property
    def promotions(self) -> list[dict[str, Any]]:
        """The promotions applied, each with its discount as money."""
        return [
            {**line, "discount_display": self.money(int(line["discount"])) if line.get("discount") else ""}
            for line in self.payment.promotions
        ]

    @property
    def amount_display(self) -> str:
        return self.money(self.payment.amount)

    @property
    def asked_display(self) -> str:
        """What the merchant asked before promotions and points: cash + points' value + discount."""
        return self.money(self.payment.amount + self.payment.points_amount + self.payment.discount_amount)

    @property
    def refunded_display(self) -> str:
        return self.money(self.payment.amount_refunded)

    @property
    def discount_display(self) -> str:
        return self.money(self.payment.discount_amount)

    @property
    def points_value_display(self) -> str:
        return self.money(self.payment.points_amount)

    @property
    def refund_rows(self) -> list[tuple[Refund, str]]:
        return [(refund, self.money(refund.amount)) for refund in self.refunds]


def payment_detail(*, cardholder: Cardholder, payment_id: str) -> PaymentDetail | None:
    """One of the cardholder's own live payments with its refunds, its points movements and the events that changed
    its state (and its refunds'), its disputes; None for any other id. Seven queries whatever the payment."""
    payment: PaymentIntent | None = PaymentIntent.objects.find(
        payment_id,
        lambda payments: payments.select_related("merchant", "issuer", "card", "linked_account", "store").filter(
            cardholder=cardholder, livemode=True
        ),
    )
    if payment is None:
        return None
    refunds = list(Refund.objects.of(payment).order_by("created_at", "id"))
    movements = rewards_selectors.payment_movements(
        cardholder_id=cardholder.pk,
        payment_ref=payment.public_id,
        transaction_ids=[payment.points_spend_id] if payment.points_spend_id else [],
    )
    objects = [payment.public_id, *(refund.public_id for refund in refunds)]
    events = Event.objects.filter(object_id__in=objects, livemode=True).order_by("created_at", "id")
    history = [
        StateChange(at, kind, object_id)
        for at, kind, object_id in events.values_list("created_at", "type", "object_id")
    ]
    disputes = selectors.disputes_for_payments(cardholder, [payment.public_id]).get(payment.public_id, [])
    return PaymentDetail(payment=payment, refunds=refunds, movements=movements, history=history, disputes=disputes)


def merchant_names_of_payments(payment_refs: list[str]) -> dict[str, str]:
    """Each payment's merchant's name, by the payment's public id; what the points statement shows beside the points
    a payment earned. One query while every payment is found; one that is not may be in an archived month (the
    statement reads archived months of entries too), read in two more: the archived months, then their tables."""
    names = dict(
        PaymentIntent.objects.filter(public_id__in=payment_refs).values_list("public_id", "merchant__display_name")
    )
    missing = sorted(set(payment_refs) - names.keys())
    archives = archive_tables(PAYMENTS) if missing else []
    if archives:
        source = with_archives(PAYMENTS, ("public_id", "merchant_id"), archives)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT p.public_id, m.display_name FROM {source} p"  # noqa: S608 (names checked by with_archives)
                " JOIN merchants_merchant m ON m.id = p.merchant_id WHERE p.public_id = ANY(%s)",
                [missing],
            )
            names.update(cursor.fetchall())
    return names
