from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alliance import services
from core.errors import MengkaError
from core.money import format_minor


class Command(BaseCommand):
    help = (
        "Runs the revenue share of a month (default: the previous one). Nothing changed since its latest version: "
        "that version again; anything changed: a new version showing the differences."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", help="YYYY-MM (default: the previous month)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = services.month_start(options["month"]) if options["month"] else services.previous_month()
            run = services.revenue_share_run(month, echo=self.stdout)  # type: ignore[arg-type]
        except MengkaError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{run.month:%Y-%m} version {run.version} ({run.status}): pool {format_minor(run.pool, 'CNY')}, "
                f"costs {format_minor(run.costs, 'CNY')}, {run.statements.count()} statements"
            )
        )
