"""System checks of the platform layer."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError

from .db_roles import AUDIT_TABLE, connected_role


@register(Tags.security, deploy=True)
def check_database_role(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`check --deploy`: the web processes and workers must connect as the application role, which owns nothing
    (docs/operations.md, "Database roles"). A superuser, or the audit log's owner, could disable or drop the triggers
    that keep the audit log append-only."""
    try:
        role = connected_role()
    except DatabaseError as exc:
        return [
            Warning(
                f"Could not check the database role: {exc}".strip(),
                hint="Run check --deploy where the database answers, with the processes' DATABASE_URL.",
                id="core.W003",
            )
        ]
    found: list[CheckMessage] = []
    if role.superuser:
        found.append(
            Warning(
                f"The database connection's role {role.name!r} is a superuser.",
                hint="Connect as the application role (manage.py db_roles; docs/operations.md, Database roles).",
                id="core.W001",
            )
        )
    elif role.owns_audit_log:
        # A superuser is reported once: it can do anything, the owner's rights included.
        relation = "owns" if role.name == role.audit_owner else f"is a member of {role.audit_owner!r}, which owns"
        found.append(
            Warning(
                f"The database connection's role {role.name!r} {relation} {AUDIT_TABLE} and could disable the audit "
                "log's append-only triggers.",
                hint="Run migrations as the owner and connect the platform as the application role "
                "(manage.py db_roles; docs/operations.md, Database roles).",
                id="core.W002",
            )
        )
    return found
