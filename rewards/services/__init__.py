"""The points ledger's writes, one module per concern. Other apps post points only through these names.

posting      the machinery every posting uses: idempotency, the transaction row, locks in one order, the entries,
             the retry after a deadlock
accounts     wallets, points debts, the banks' sub-accounts and the CNY clearing accounts, created on first use
losses       a bank's CNY loss written off against its clearing account (reconciliation)
lots         a wallet's lots: credits (a points debt paid off first), spends (soonest expiry first); the ledger's day
obligations  what points are worth in CNY, and what one party owes another for them
earn         earning points
redeem       redeeming points
holds        holding points, then posting or voiding the hold
exchange     exchanging points between two banks' programmes, under the alliance's exchange policy in force
reversal     reversing a transaction, wholly or in part, cumulatively
expiry       expiring lots past their last valid day (the daily job, and before a spend)
adjustments  manual adjustments, approved through core.approvals
bulk         many earns in one transaction (settlement)
campaigns    a merchant's promotions: checking, creating, updating, pausing, resuming, ending
benefits     the benefits catalogue: checking, publishing (approved through core.approvals), pricing, redeeming
cofunding    operators' decisions on merchants' promotions: co-funding approval, pausing
cofunding_posting  a co-funding bank's part of a promotion use as a ledger obligation, and its return by refunds
vouchers     vouchers after issue: cancelling, redeeming at the merchant, expiring

See docs/ledger.md.
"""

from ..models import Purpose  # the purpose a caller names for `bank_points_account`
from . import promotions
from .accounts import account_get_or_create, bank_points_account, clearing_account, debt_account, wallet_account
from .adjustments import (
    POINTS_ADJUSTMENT,
    POINTS_ADJUSTMENT_KIND,
    adjustment_check,
    adjustment_post,
    adjustment_request,
)
from .benefits import (
    BENEFIT_PUBLISH,
    BENEFIT_PUBLISH_KIND,
    PUBLISH_PERMISSION,
    BenefitQuote,
    QuoteLine,
    benefit_check,
    benefit_price,
    benefit_publish_apply,
    benefit_publish_requests_pending,
    benefit_redeem,
    benefit_request_publish,
    benefit_version,
    benefit_withdraw,
    card_eligible,
    on_offer,
    product_eligible,
    quota_limits,
    quota_periods,
)
from .bulk import EarnEvent, points_earn_bulk
from .campaigns import (
    promotion_check,
    promotion_create,
    promotion_end,
    promotion_out,
    promotion_pause,
    promotion_resume,
    promotion_update,
    promotions_with_lists,
)
from .cofunding import promotion_cofunding_decide, promotion_pause_by_operator
from .earn import EarnSource, points_earn
from .exchange import (
    ExchangeQuote,
    exchange_policy_check,
    exchange_policy_delete,
    exchange_policy_in_force,
    exchange_policy_save,
    exchange_quote,
    points_exchange,
)
from .expiry import lots_expire
from .holds import hold_create, hold_post, hold_void, holds_expire
from .losses import loss_post
from .lots import lot_expiry, today
from .obligations import Party, cny_units, points_value_units, units_cny
from .posting import retry_on_conflict
from .redeem import points_redeem
from .reversal import transaction_reverse
from .vouchers import qr_payload, voucher_cancel, voucher_for_merchant, voucher_out, voucher_redeem, vouchers_expire

__all__ = [
    "BENEFIT_PUBLISH",
    "BENEFIT_PUBLISH_KIND",
    "POINTS_ADJUSTMENT",
    "POINTS_ADJUSTMENT_KIND",
    "PUBLISH_PERMISSION",
    "BenefitQuote",
    "EarnEvent",
    "EarnSource",
    "ExchangeQuote",
    "Party",
    "Purpose",
    "QuoteLine",
    "account_get_or_create",
    "adjustment_check",
    "adjustment_post",
    "adjustment_request",
    "bank_points_account",
    "benefit_check",
    "benefit_price",
    "benefit_publish_apply",
    "benefit_publish_requests_pending",
    "benefit_redeem",
    "benefit_request_publish",
    "benefit_version",
    "benefit_withdraw",
    "card_eligible",
    "clearing_account",
    "cny_units",
    "debt_account",
    "exchange_policy_check",
    "exchange_policy_delete",
    "exchange_policy_in_force",
    "exchange_policy_save",
    "exchange_quote",
    "hold_create",
    "hold_post",
    "hold_void",
    "holds_expire",
    "loss_post",
    "lot_expiry",
    "lots_expire",
    "on_offer",
    "points_earn",
    "points_earn_bulk",
    "points_exchange",
    "points_redeem",
    "points_value_units",
    "product_eligible",
    "promotion_check",
    "promotion_cofunding_decide",
    "promotion_create",
    "promotion_end",
    "promotion_out",
    "promotion_pause",
    "promotion_pause_by_operator",
    "promotion_resume",
    "promotion_update",
    "promotions",
    "promotions_with_lists",
    "qr_payload",
    "quota_limits",
    "quota_periods",
    "retry_on_conflict",
    "today",
    "transaction_reverse",
    "units_cny",
    "voucher_cancel",
    "voucher_for_merchant",
    "voucher_out",
    "voucher_redeem",
    "vouchers_expire",
    "wallet_account",
]
