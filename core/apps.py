from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = _("Platform")

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .jobs import register_job

        register_job("core.partitions_maintain", shared=False, task="core.partitions_maintain")


class OperatorAdminConfig(admin_apps.AdminConfig):
    """Django's admin with our site (the sign-in lockout) as `admin.site`; named in INSTALLED_APPS."""

    default = False
    default_site = "core.admin_site.OperatorAdminSite"
