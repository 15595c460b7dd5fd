from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Members")

    def ready(self) -> None:
        from core.scoping import register_bank_roles_provider

        from .selectors import bank_roles_for_user

        register_bank_roles_provider(bank_roles_for_user)
