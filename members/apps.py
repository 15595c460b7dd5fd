from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Members")

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from core.console import register_bank_choices
        from core.scoping import register_bank_roles_provider

        from .models import PointsProgram
        from .selectors import bank_choices_for_scope, bank_roles_for_user, programs_changed

        register_bank_roles_provider(bank_roles_for_user)
        register_bank_choices(bank_choices_for_scope)
        post_save.connect(programs_changed, sender=PointsProgram, dispatch_uid="members.programs_changed")
        post_delete.connect(programs_changed, sender=PointsProgram, dispatch_uid="members.programs_changed.delete")
