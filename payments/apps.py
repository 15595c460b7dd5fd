from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = _("Payments")

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_delete, post_save

        from core.approvals import approval_kind_register
        from core.partitions import keep_while_open, keep_while_written
        from core.portal_tiles import register_portal_tile
        from rewards.selectors import register_payment_merchant_names

        from . import checks, dashboard  # noqa: F401  (checks: registers the system checks)
        from .cardholder_statement import merchant_names_of_payments
        from .models import RiskBlock
        from .services import PAYOUT_RELEASE_KIND, RISK_REVIEW_RELEASE_KIND, WRITE_OFF_KIND
        from .tiles import spending_tile
        from .windows import CAPTURE_SPAN_DAYS, REFUND_SPAN_DAYS, RELEASED_HOLD, RELEASED_HOLDS, SLACK_DAYS

        # Rows of a payment's month are written until its last payment can no longer be captured (its attempts and
        # routing decision) or refunded (the refund, its fee splits and settlement line): the month is kept till then.
        keep_while_written(("payments_paymentattempt", "payments_routingdecision"), CAPTURE_SPAN_DAYS)
        keep_while_written(("payments_refund", "payments_feesplit", "payments_settlementline"), REFUND_SPAN_DAYS)
        # A refund reverses the points its payment earned or spent, and its promotions' points, reading those ledger
        # transactions and their entries (made at capture, in the payment's month or after): kept while refunds are.
        keep_while_written(("rewards_ledgertransaction", "rewards_entry"), REFUND_SPAN_DAYS)
        # Nothing bounds how late a channel or an operator may open a dispute: its month is kept as long as its
        # payments may be refunded (a dispute takes back what a refund would). Its evidence comes by the dispute's
        # deadline, so many working days later: in calendar days at most twice as many, and the longest run of days
        # off. A dispute not closed yet, and its evidence, keep their month however old (`OPEN_ROWS`).
        respond_days = 2 * max(settings.DISPUTE_RESPOND_WORKING_DAYS.values()) + SLACK_DAYS
        keep_while_written(("payments_dispute",), REFUND_SPAN_DAYS)
        keep_while_written(("payments_disputeevidence",), REFUND_SPAN_DAYS + respond_days)
        # Reconciliation raises and updates exceptions of a payment's month while its refunds are written, and until
        # the statement of the last refund's day is fetched (RECON_LOOKBACK_DAYS back, the day after its cut-off).
        reconciled_for = REFUND_SPAN_DAYS + settings.RECON_LOOKBACK_DAYS + 1
        keep_while_written(("payments_reconciliationexception",), reconciled_for)
        # The payment itself is updated by its refunds and named by those exceptions: kept as long.
        keep_while_written(("payments_paymentintent",), reconciled_for)
        # A payment or refund held from settlement, however old, is settled once its hold is lifted: kept till then.
        for table, condition in RELEASED_HOLDS.items():
            keep_while_open(table, RELEASED_HOLD, condition)

        # The points statement names the merchant behind points a payment earned: rewards knows payments by id only.
        register_payment_merchant_names(merchant_names_of_payments)

        # The blocked lists are cached with the routing configuration: any change, from the admin, a service or a
        # bulk delete, makes every process reload it.
        post_save.connect(_blocks_changed, sender=RiskBlock, dispatch_uid="payments.blocks_changed")
        post_delete.connect(_blocks_changed, sender=RiskBlock, dispatch_uid="payments.blocks_changed.delete")
        register_portal_tile("payments.spending", spending_tile, order=20)
        dashboard.register()
        # Payout releases, write-offs and risk releases above the threshold go through the approval queue, whose
        # dashboard counter (core) counts them.
        approval_kind_register(PAYOUT_RELEASE_KIND)
        approval_kind_register(WRITE_OFF_KIND)
        approval_kind_register(RISK_REVIEW_RELEASE_KIND)


def _blocks_changed(**_: Any) -> None:
    from django.db import transaction

    from .routing import config_changed

    config_changed()  # this process at once; the others again once the change is committed
    transaction.on_commit(config_changed)
