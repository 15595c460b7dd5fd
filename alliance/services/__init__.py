"""The alliance's writes, one module per concern; the rest of the project calls the names exported here.

revenue_share  the monthly revenue share: its terms kept four-eyes, and the run that shares a month's pool
"""

from .revenue_share import (
    membership_fee_save,
    membership_fees_in_force,
    month_start,
    policy_check,
    policy_in_force,
    policy_save,
    previous_month,
    revenue_share_compute,
    revenue_share_run,
    terms_decide,
    terms_submit,
)

__all__ = [
    "membership_fee_save",
    "membership_fees_in_force",
    "month_start",
    "policy_check",
    "policy_in_force",
    "policy_save",
    "previous_month",
    "revenue_share_compute",
    "revenue_share_run",
    "terms_decide",
    "terms_submit",
]
