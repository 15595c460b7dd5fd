from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MerchantsConfig(AppConfig):
    name = "merchants"
    verbose_name = _("Merchants")

    def ready(self) -> None:
        from core.approvals import approval_kind_register

        from .services import PAYOUTS_UNFREEZE_KIND, SETTLEMENT_ACCOUNT_CHANGE_KIND

        # Both go through the approval queue, whose dashboard counter (core) counts them.
        approval_kind_register(PAYOUTS_UNFREEZE_KIND)
        approval_kind_register(SETTLEMENT_ACCOUNT_CHANGE_KIND)
