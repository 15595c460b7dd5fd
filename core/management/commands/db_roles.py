"""Creates the application's database role if it is missing and grants it what the platform needs, nothing on the
audit log beyond SELECT and INSERT (core.db_roles). Run as the owner after every migrate."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.db_roles import DatabaseRoleError, app_role_grant, password_from_environment


class Command(BaseCommand):
    help = (
        "Run as the tables' owner after migrate: creates the application role if it is missing and grants it "
        "SELECT/INSERT/UPDATE/DELETE on every table (SELECT and INSERT only on the audit log) and USAGE/SELECT on "
        "every sequence, now and for tables created later. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app-role", required=True, help="the role the web processes and workers connect as")
        parser.add_argument(
            "--password-env",
            metavar="VARIABLE",
            help="an environment variable holding the role's password, set on the role (left alone without it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            password = password_from_environment(options["password_env"]) if options["password_env"] else None
            granted = app_role_grant(role=options["app_role"], password=password)
        except DatabaseRoleError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"{'Created' if granted.created else 'Updated'} role {granted.role}"
            f"{' (password set)' if granted.password_set else ''}: SELECT/INSERT/UPDATE/DELETE on "
            f"{granted.tables} tables and views in {granted.schema} but SELECT/INSERT only on the audit log, "
            f"USAGE/SELECT on {granted.sequences} sequences; the same for tables created later."
        )
