from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AllianceConfig(AppConfig):
    name = "alliance"
    verbose_name = _("Alliance")

    def ready(self) -> None:
        # Segment derivations are kept here, out of members' sight: a withdrawal of the consent they were derived
        # under removes them in its own transaction (PIPL: honoured at once).
        from core.approvals import approval_kind_register
        from members.models import ConsentPurpose
        from members.services import consent_withdrawal_hook

        from . import dashboard
        from .services import TERMS_KIND
        from .services.segments import segments_forget

        consent_withdrawal_hook(ConsentPurpose.PERSONALISED_OFFERS, segments_forget)
        approval_kind_register(TERMS_KIND)
        dashboard.register()
