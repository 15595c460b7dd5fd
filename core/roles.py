"""Operator groups and their permissions, granted by data migrations (additive: never removes a grant)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

from .scoping import ALLIANCE_OPERATORS, BANK_AUDITORS, BANK_OPERATORS, ROLE_GROUPS

__all__ = ("ALLIANCE_OPERATORS", "BANK_AUDITORS", "BANK_OPERATORS", "grant_permissions")


def grant_permissions(apps: Any, grants: Mapping[str, Iterable[str]]) -> None:
    """`grants` maps a group name to "app_label.codename" permissions; groups are created when missing.

    Use from a data migration: `RunPython(lambda apps, se: grant_permissions(apps, {...}))`.
    """
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)
    for group_name, labels in grants.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for label in labels:
            app_label, codename = label.split(".", 1)
            permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
            group.permissions.add(permission)


def model_permissions(label: str, actions: Iterable[str]) -> list[str]:
    """model_permissions("members.card", ["view", "change"]) -> ["members.view_card", "members.change_card"]."""
    app_label, model = label.split(".")
    return [f"{app_label}.{action}_{model}" for action in actions]
