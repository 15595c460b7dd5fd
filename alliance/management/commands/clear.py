"""Clears by hand, as the daily job does: `clear --day 2026-12-04 [--currency CNY]`; without --day, every day due.
`--send` then sends the instructions; `--poll` asks about sent ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alliance import services
from core.errors import MengkaError


class Command(BaseCommand):
    help = "Net a business day's inter-bank obligations (or every day due) and make its settlement instructions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--day", type=dt.date.fromisoformat, help="2026-12-04; default: every day due")
        parser.add_argument("--currency", default=None, help="CNY (with --day; default CNY)")
        parser.add_argument("--send", action="store_true", help="then send the pending instructions")
        parser.add_argument("--poll", action="store_true", help="then ask about the sent instructions")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["day"]:
                runs = [services.clearing_run(options["day"], options["currency"] or "CNY", echo=self.stdout)]  # type: ignore[arg-type]
            else:
                if options["currency"]:
                    raise CommandError("--currency goes with --day; without it every currency due is cleared")
                runs = services.clearing_due(echo=self.stdout)  # type: ignore[arg-type]
            for run in runs:
                self.stdout.write(
                    f"clear {run.business_day} {run.currency}: {run.status}, {run.positions_count} position(s),"
                    f" {run.entries_count} entries, {run.instructions_count} instruction(s)"
                )
            if not runs:
                self.stdout.write("clear: nothing due")
            if options["send"]:
                self.stdout.write(f"sent: {services.instructions_send().counts()}")
            if options["poll"]:
                self.stdout.write(f"polled: {services.instructions_poll().counts()}")
        except MengkaError as exc:
            raise CommandError(str(exc)) from exc
