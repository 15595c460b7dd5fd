"""Vouchers after issue: the cardholder cancels within the window (points, stock and quota come back, once), the
merchant redeems at the till (exactly once, `voucher.redeemed` to its webhooks), and the expiry job.

Lock order, as in a redemption: the voucher's row, then the quota counters, then the ledger's accounts, and the
benefit's row last (the expiry job: the vouchers, then their benefits in id order). See docs/benefits.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from psycopg2 import sql

from core.audit import audit_record
from core.errors import Conflict, NotFound, ValidationFailed
from merchants.models import Merchant, Store
from merchants.services import event_emit

from ..models import Benefit, QuotaKind, Voucher
from .benefits import code_hash, normalise_code, quota_limits, quota_release
from .posting import Actor, retry_on_conflict
from .reversal import transaction_reverse

QR_PREFIX = "mengka:voucher:"


def qr_payload(code: str) -> str:
    """What the cardholder's QR code carries: the code itself, which the merchant's till sends to the API."""
    return QR_PREFIX + code


def _unix(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def voucher_out(voucher: Voucher) -> dict[str, Any]:
    """What a merchant sees of a voucher (the API's body and the `voucher.redeemed` event's object): never the code."""
    benefit = voucher.benefit
    return {
        "id": f"vch_{voucher.pk}",
        "object": "voucher",
        "code_hint": voucher.code_hint,
        "state": voucher.state,
        "benefit": {
            "id": benefit.pk,
            "kind": benefit.kind,
            "title_zh": benefit.title_zh,
            "title_en": benefit.title_en,
            "terms_zh": benefit.terms_zh,
            "terms_en": benefit.terms_en,
        },
        "stores": sorted(store.code for store in benefit.stores.all()),
        "redeemed_store": voucher.redeemed_store.code if voucher.redeemed_store else None,
        "livemode": True,
        "issued": _unix(voucher.issued_at),
        "valid_until": _unix(voucher.expires_at),
        "redeemed": _unix(voucher.redeemed_at),
    }


def voucher_for_merchant(*, merchant: Merchant, code: str) -> Voucher:
    """The voucher the code names, if it is redeemed at `merchant`; `NotFound` for any other merchant or code."""
    normalised = normalise_code(code)
    voucher = None
    if normalised is not None:
        voucher = (
            Voucher.objects.select_related("benefit", "redeemed_store")
            .prefetch_related("benefit__stores")
            .filter(code_hash=code_hash(normalised), benefit__merchant=merchant)
            .first()
        )
    if voucher is None:
        raise NotFound(_("No such voucher."), param="code")
    return voucher


_REFUSALS: dict[str, tuple[str, Any]] = {
    Voucher.State.REDEEMED: ("voucher_redeemed", gettext_lazy("This voucher has already been redeemed.")),
    Voucher.State.EXPIRED: ("voucher_expired", gettext_lazy("This voucher has expired.")),
    Voucher.State.CANCELLED: ("voucher_cancelled", gettext_lazy("This voucher was cancelled.")),
}


def _refusal(state: str) -> Conflict:
    code, message = _REFUSALS.get(state, _REFUSALS[Voucher.State.EXPIRED])
    return Conflict(str(message), code=code, param="code")


def voucher_redeem(*, merchant: Merchant, code: str, store_code: str | None = None, actor: Any = None) -> Voucher:
    """The merchant redeems the voucher at its till (at one of the benefit's stores when it lists them). Exactly once:
    of two tills racing, one guarded `UPDATE … WHERE state = 'issued'` wins and the other gets a `Conflict`. The
    `voucher.redeemed` event is written in the same transaction."""
    voucher = voucher_for_merchant(merchant=merchant, code=code)
    listed = list(voucher.benefit.stores.all())
    store = None
    if store_code is not None:
        store = Store.objects.filter(merchant=merchant, livemode=True, code=store_code).first()
        if store is None:
            raise ValidationFailed(_("No such store."), param="store")
    if listed and store not in listed:
        raise ValidationFailed(
            _("This voucher is redeemed only at its listed stores: name one."), code="store_not_accepted", param="store"
        )
    now = timezone.now()
    with transaction.atomic():
        moved = Voucher.objects.filter(pk=voucher.pk, state=Voucher.State.ISSUED, expires_at__gt=now).update(
            state=Voucher.State.REDEEMED, redeemed_at=now, redeemed_store=store
        )
        voucher.refresh_from_db(fields=["state", "redeemed_at", "redeemed_store", "expires_at"])
        if not moved:
            raise _refusal(voucher.state)
        event_emit(merchant=merchant, type="voucher.redeemed", payload=voucher_out(voucher), livemode=True)
        audit_record(
            actor=actor,
            action="voucher.redeem",
            obj=voucher,
            after={"state": voucher.state, "store": store_code},
            object_banks={voucher.benefit.bank_id},
        )
    return voucher


@retry_on_conflict
def voucher_cancel(*, voucher_id: int, cardholder_id: int, actor: Actor = None) -> Voucher:
    """The cardholder cancels an issued voucher within its benefit's cancel window: the points go back through ledger
    reversals (and the obligation to the funder with them), one unit of stock and the quota come back — once, as the
    voucher's row is locked and moved from issued to cancelled first."""
    now = timezone.now()
    with transaction.atomic():
        voucher = (
            Voucher.objects.select_for_update(of=("self",))
            .select_related("benefit")
            .filter(pk=voucher_id, cardholder_id=cardholder_id)
            .first()
        )
        if voucher is None:
            raise NotFound(_("No such voucher."), param="voucher")
        benefit = voucher.benefit
        if voucher.state != Voucher.State.ISSUED:
            raise _refusal(voucher.state)
        window = dt.timedelta(hours=benefit.cancel_window_hours)
        if not benefit.cancel_window_hours or now > voucher.issued_at + window or now >= voucher.expires_at:
            raise Conflict(_("This voucher can no longer be cancelled."), code="cancel_window_closed", param="voucher")
        voucher.state, voucher.cancelled_at = Voucher.State.CANCELLED, now
        voucher.save(update_fields=["state", "cancelled_at"])
        periods: dict[str, str] = {QuotaKind.HOLDER_MONTH: voucher.month, QuotaKind.HOLDER_YEAR: voucher.month[:4]}
        for kind, limit in quota_limits(benefit).items():
            if limit is not None:
                owner = voucher.card_id if kind == QuotaKind.CARD else voucher.cardholder_id
                quota_release(benefit_id=benefit.pk, kind=kind, owner_id=owner, period=periods.get(kind, ""))
        for payment in voucher.payments.order_by("id"):
            transaction_reverse(
                transaction_id=payment.transaction_id,
                transaction_created_at=payment.transaction_created_at,
                amount=payment.points,
                idempotency_key=f"voucher-cancel:{voucher.pk}:{payment.pk}",
                actor=actor,
                reason="voucher cancelled",
            )
        # the benefit's row last, as a redemption takes it: the two never wait for each other in opposite orders
        Benefit.objects.filter(pk=benefit.pk).update(
            stock_left=F("stock_left") + 1,
            redeemed_count=F("redeemed_count") - 1,
            cost_units=F("cost_units") - voucher.cost_units,
        )
    return voucher


_EXPIRE_CHUNK = sql.SQL(
    "WITH due AS ("
    " SELECT id FROM {voucher} WHERE state = 'issued' AND expires_at <= %(now)s"
    " ORDER BY id LIMIT %(chunk)s FOR UPDATE SKIP LOCKED"
    "), expired AS ("
    " UPDATE {voucher} v SET state = 'expired', expired_at = %(now)s FROM due"
    " WHERE v.id = due.id AND v.state = 'issued' RETURNING v.benefit_id"
    "), benefits AS MATERIALIZED ("
    " SELECT id FROM {benefit} WHERE id IN (SELECT benefit_id FROM expired)"
    " AND return_stock_on_expiry AND stock_left IS NOT NULL ORDER BY id FOR NO KEY UPDATE"
    "), returned AS ("
    " UPDATE {benefit} b SET stock_left = b.stock_left + n.count"
    " FROM (SELECT benefit_id, count(*) AS count FROM expired GROUP BY benefit_id) n, benefits"
    " WHERE b.id = n.benefit_id AND b.id = benefits.id RETURNING n.count"
    ") SELECT (SELECT count(*) FROM expired), (SELECT coalesce(sum(count), 0) FROM returned)"
)


def vouchers_expire(
    *, now: dt.datetime, chunk: int = 1000, progress: Callable[..., None] | None = None
) -> dict[str, int]:
    """Issued vouchers past their validity become expired, set-based, a chunk per transaction (one statement each:
    the vouchers are locked first, then the benefits whose stock comes back, in id order, so two runs, a cancellation
    or a redemption never wait for each other in opposite orders).
    Points are never returned; stock is put back only for benefits whose terms say so (`return_stock_on_expiry`);
    quota is not. A voucher a till or a cancellation holds at that moment is skipped and taken by the next run. Safe to
    run twice or to kill at any point."""
    query = _EXPIRE_CHUNK.format(
        voucher=sql.Identifier(Voucher._meta.db_table), benefit=sql.Identifier(Benefit._meta.db_table)
    )
    totals = {"expired": 0, "stock_returned": 0}
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(query, {"now": now, "chunk": chunk})
            expired, returned = cursor.fetchone()
        totals["expired"] += expired
        totals["stock_returned"] += int(returned)
        if progress is not None and expired:
            progress(expired, stock_returned=int(returned))
        if expired < chunk:
            return totals
