"""Payments' writes, one module per concern; other apps, views, the admin and the jobs call these names.

intents   create and confirm: validation, funding, risk, routing, the channels tried in turn
capture   a processing payment moved on (authorised, captured with its points and fee, failed); the capture
cancel    void before capture, reversal on the business day (撤销)
refunds   refunds (退货), sent once and settled cumulatively
reviews   risk review decisions
resolve   the jobs that settle what requests left open
settlement merchant settlement: periods, the chunked set-based run, the due periods of each cycle
channels  channels, routing rules and their health
payouts   settled batches paid to merchants through the sponsor's channel: made, sent, polled, released (four eyes)
reconciliation  channel statements imported (COPY) and matched; the exceptions queue and its actions (对账)
disputes  disputes (差错, 调单, 拒付): opened, answered with evidence, closed with their money
attempts  the calls to a channel and the attempt's recorded outcome (used by the others)
"""

from .cancel import payment_cancel
from .capture import payment_capture
from .channels import channel_create, channels_probe, routing_config_changed, routing_rule_create
from .common import MAX_ATTEMPTS
from .disputes import (
    DisputePollReport,
    dispute_accept,
    dispute_answer_send,
    dispute_evidence_submit,
    dispute_get,
    dispute_open,
    dispute_outcome_record,
    disputes_expire,
    disputes_poll,
)
from .intents import payment_confirm, payment_create
from .payouts import (
    PAYOUT_RELEASE_KIND,
    PayoutReport,
    payout_needs_two,
    payout_release,
    payout_release_approve,
    payout_release_asked,
    payout_release_request,
    payout_release_requests_pending,
    payout_resend,
    payouts_create,
    payouts_poll,
    payouts_send,
)
from .reconciliation import (
    WRITE_OFF_KIND,
    ImportResult,
    ReconcileReport,
    exception_accept_channel,
    exception_accept_ours,
    exception_reinquire,
    exception_write_off_approve,
    exception_write_off_request,
    reconcile_channel_day,
    reconcile_due,
    statement_import,
    statement_read,
    statement_window,
    write_off_amount,
    write_off_requests_pending,
)
from .refunds import refund_create
from .resolve import ResolveReport, SweepReport, attempts_resolve, authorizations_expire, orphans_sweep
from .reviews import (
    RISK_REVIEW_RELEASE_KIND,
    risk_release_requests_pending,
    risk_review_approve,
    risk_review_needs_two,
    risk_review_reject,
    risk_reviews_expire,
)
from .settlement import SettleReport, settle, settle_due_t0, settle_due_t1

__all__ = [
    "MAX_ATTEMPTS",
    "PAYOUT_RELEASE_KIND",
    "RISK_REVIEW_RELEASE_KIND",
    "WRITE_OFF_KIND",
    "DisputePollReport",
    "ImportResult",
    "PayoutReport",
    "ReconcileReport",
    "ResolveReport",
    "SettleReport",
    "SweepReport",
    "attempts_resolve",
    "authorizations_expire",
    "channel_create",
    "channels_probe",
    "dispute_accept",
    "dispute_answer_send",
    "dispute_evidence_submit",
    "dispute_get",
    "dispute_open",
    "dispute_outcome_record",
    "disputes_expire",
    "disputes_poll",
    "exception_accept_channel",
    "exception_accept_ours",
    "exception_reinquire",
    "exception_write_off_approve",
    "exception_write_off_request",
    "orphans_sweep",
    "payment_cancel",
    "payment_capture",
    "payment_confirm",
    "payment_create",
    "payout_needs_two",
    "payout_release",
    "payout_release_approve",
    "payout_release_asked",
    "payout_release_request",
    "payout_release_requests_pending",
    "payout_resend",
    "payouts_create",
    "payouts_poll",
    "payouts_send",
    "reconcile_channel_day",
    "reconcile_due",
    "refund_create",
    "risk_release_requests_pending",
    "risk_review_approve",
    "risk_review_needs_two",
    "risk_review_reject",
    "risk_reviews_expire",
    "routing_config_changed",
    "routing_rule_create",
    "settle",
    "settle_due_t0",
    "settle_due_t1",
    "statement_import",
    "statement_read",
    "statement_window",
    "write_off_amount",
    "write_off_requests_pending",
]
