"""The merchants app's approvals waiting, for the operators' dashboard (`core.console`). Requests to lift a payout
freeze are approval requests: the core counter of the approval queue counts them."""

from __future__ import annotations

from django.utils.translation import gettext as _

from core.console import DashboardView, register_approval_counter

from .models import SettlementAccountChange


def account_changes_awaiting_approval(view: DashboardView) -> tuple[str, int, str] | None:
    changes = view.queryset(SettlementAccountChange)
    if changes is None:
        return None
    status = SettlementAccountChange.Status.PENDING
    url = view.url(SettlementAccountChange, status=status)
    return _("Settlement account changes"), changes.filter(status=status).count(), url


def register() -> None:
    register_approval_counter("merchants.settlement_accounts", account_changes_awaiting_approval)
