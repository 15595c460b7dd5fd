from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RewardsConfig(AppConfig):
    name = "rewards"
    verbose_name = _("Rewards")

    def ready(self) -> None:
        from core.approvals import approval_kind_register
        from core.portal_tiles import register_portal_tile

        from . import dashboard
        from .services import BENEFIT_PUBLISH_KIND, POINTS_ADJUSTMENT_KIND
        from .tiles import benefits_tile, points_tile

        # On the cardholder's home page (members), which cannot import this app: points before spending, benefits after.
        register_portal_tile("rewards.points", points_tile, order=10)
        register_portal_tile("rewards.benefits", benefits_tile, order=30)
        approval_kind_register(POINTS_ADJUSTMENT_KIND)
        approval_kind_register(BENEFIT_PUBLISH_KIND)
        dashboard.register()
