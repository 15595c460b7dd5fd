"""The alliance's writes, one module per concern; the rest of the project calls the names exported here.

best_card      find my best card: each card product's value over twelve months of a cardholder's spending, ranked
clearing       inter-bank clearing: netting a day per currency, settlement instructions through the clearing channel
revenue_share  the monthly revenue share: its terms kept four-eyes, and the run that shares a month's pool
segments       the nightly job deriving cardholders' segment tags, and what a consent withdrawal removes

See docs/portal.md (Find my best card), docs/clearing.md, docs/revenue-share.md and docs/segments.md.
"""

from .best_card import (
    BestCard,
    CardResult,
    HistorySpending,
    PairResult,
    best_card_for,
    spending_check,
    spending_from_history,
)
from .clearing import (
    ClearingReport,
    clearing_daily,
    clearing_due,
    clearing_run,
    instruction_resend,
    instructions_poll,
    instructions_send,
    per_minor,
)
from .revenue_share import (
    TERMS_APPROVAL,
    TERMS_KIND,
    membership_fee_save,
    membership_fees_in_force,
    month_start,
    policy_check,
    policy_in_force,
    policy_save,
    previous_month,
    revenue_share_compute,
    revenue_share_run,
    terms_requests_pending,
    terms_submit,
)
from .segments import (
    SegmentReport,
    segment_rule_check,
    segment_rule_version,
    segments_compute,
    segments_forget,
)

__all__ = [
    "TERMS_APPROVAL",
    "TERMS_KIND",
    "BestCard",
    "CardResult",
    "ClearingReport",
    "HistorySpending",
    "PairResult",
    "SegmentReport",
    "best_card_for",
    "clearing_daily",
    "clearing_due",
    "clearing_run",
    "instruction_resend",
    "instructions_poll",
    "instructions_send",
    "membership_fee_save",
    "membership_fees_in_force",
    "month_start",
    "per_minor",
    "policy_check",
    "policy_in_force",
    "policy_save",
    "previous_month",
    "revenue_share_compute",
    "revenue_share_run",
    "segment_rule_check",
    "segment_rule_version",
    "segments_compute",
    "segments_forget",
    "spending_check",
    "spending_from_history",
    "terms_requests_pending",
    "terms_submit",
]
