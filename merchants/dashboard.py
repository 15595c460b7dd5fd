"""The merchants app's approvals waiting, for the operators' dashboard (`core.console`)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from core.console import DashboardView, register_approval_counter

from .models import SettlementAccountChange, UnfreezeRequest


def unfreezes_awaiting_approval(view: DashboardView) -> tuple[str, int, str] | None:
    requests = view.queryset(UnfreezeRequest)
    if requests is None:
        return None
    status = UnfreezeRequest.Status.PENDING
    return _("Merchant unfreezes"), requests.filter(status=status).count(), view.url(UnfreezeRequest, status=status)


def account_changes_awaiting_approval(view: DashboardView) -> tuple[str, int, str] | None:
    changes = view.queryset(SettlementAccountChange)
    if changes is None:
        return None
    status = SettlementAccountChange.Status.PENDING
    url = view.url(SettlementAccountChange, status=status)
    return _("Settlement account changes"), changes.filter(status=status).count(), url


def register() -> None:
    register_approval_counter("merchants.unfreezes", unfreezes_awaiting_approval)
    register_approval_counter("merchants.settlement_accounts", account_changes_awaiting_approval)
