"""Settles a period by hand, as the settlement jobs do: `settle --cycle t1 --period 2026-12-04`, or
`settle --cycle t0 --period 2026-12-05T14:00`; without --period, every period of the cycle that is due."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import MengkaError
from payments import services


class Command(BaseCommand):
    help = "Settle merchants for a period (T+1: a business date; T+0: a window), or every period that is due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cycle", choices=["t1", "t0"], required=True)
        parser.add_argument("--period", help="2026-12-04 (T+1) or 2026-12-05T14:00 (T+0); default: all that are due")
        parser.add_argument("--chunk-merchants", type=int, default=None, help="merchants per transaction")
        parser.add_argument("--workers", type=int, default=None, help="chunks settled at once")

    def handle(self, *args: Any, **options: Any) -> None:
        cycle, period = options["cycle"], options["period"]
        try:
            if period:
                reports = [
                    services.settle(
                        cycle,
                        period,
                        chunk_merchants=options["chunk_merchants"],
                        workers=options["workers"],
                        echo=self.stdout,  # type: ignore[arg-type]
                    )
                ]
            elif cycle == "t1":
                reports = services.settle_due_t1(echo=self.stdout)  # type: ignore[arg-type]
            else:
                reports = services.settle_due_t0(echo=self.stdout)  # type: ignore[arg-type]
        except MengkaError as exc:
            raise CommandError(str(exc)) from exc
        for report in reports:
            self.stdout.write(
                f"settle {report.cycle} {report.period}: {report.merchants} merchant(s), {report.chunks} chunk(s),"
                f" {report.batches} batch(es), {report.lines} line(s)"
            )
        if not reports:
            self.stdout.write(f"settle {cycle}: nothing due")
