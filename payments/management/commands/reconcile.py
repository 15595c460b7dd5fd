"""Reconciles a channel's business date by hand, as the `payments.reconcile` job does:
`reconcile --channel acq-unionpay-a --date 2026-03-02` fetches the channel's statement; `--file PATH` imports a file
instead (`--format` when it is not the channel's usual layout). Without --channel, every due day of every channel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import MengkaError
from payments import services
from payments.models import Channel, StatementFormat


class Command(BaseCommand):
    help = "Import and match a channel's statement for a business date (or every one that is due)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", help="channel code; default: every channel's due days")
        parser.add_argument("--date", help="the channel's business date, 2026-03-02")
        parser.add_argument("--file", help="import this statement file instead of fetching it")
        parser.add_argument("--format", choices=StatementFormat.values, help="the file's layout")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["channel"]:
            report = services.reconcile_due()
            self.stdout.write(f"reconcile: {vars(report)}")
            return
        if not options["date"]:
            raise CommandError("--date is required with --channel")
        channel = Channel.objects.filter(code=options["channel"]).first()
        if channel is None:
            raise CommandError(f"no channel {options['channel']!r}")
        try:
            day = dt.date.fromisoformat(options["date"])
        except ValueError as exc:
            raise CommandError(f"--date {options['date']!r} is not YYYY-MM-DD") from exc
        text = None
        if options["file"]:
            try:
                text = Path(options["file"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        try:
            result = services.reconcile_channel_day(
                channel=channel,
                day=day,
                text=text,
                fmt=options["format"] or "",
                echo=self.stdout,  # type: ignore[arg-type]
            )
        except MengkaError as exc:
            raise CommandError(str(exc)) from exc
        if result is None:
            self.stdout.write(f"reconcile {channel.code} {day}: the statement is not ready; asked again later")
            return
        counts = {name: entry["count"] for name, entry in result.summary.items()}
        state = "imported" if result.created else "already imported (same file)"
        self.stdout.write(f"reconcile {channel.code} {day}: {state}, {result.statement.rows} rows, {counts}")
