from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MerchantsConfig(AppConfig):
    name = "merchants"
    verbose_name = _("Merchants")

    def ready(self) -> None:
        from core.approvals import approval_kind_register

        from . import dashboard
        from .services import PAYOUTS_UNFREEZE_KIND

        approval_kind_register(PAYOUTS_UNFREEZE_KIND)
        dashboard.register()
