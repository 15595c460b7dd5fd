from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from alliance.demo import DemoContext, seed_all, summary


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Seeding makes a few hundred channel calls: their per-request INFO logs (httpx's) and any other INFO would be
    mixed into the progress bars. Warnings and errors still show."""
    loggers = [logging.getLogger(), logging.getLogger("httpx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class Command(BaseCommand):
    help = (
        "Loads the demo alliance (idempotent: a second run adds nothing), one progress bar per step, and prints the "
        "demo's addresses and logins last."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", choices=("small", "large"), default="small")
        parser.add_argument(
            "--site", default="http://127.0.0.1:8000", help="the site's address, for the summary (make run passes it)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with quiet_logs():
            ctx = seed_all(DemoContext(scale=options["scale"], out=self.stdout))
        lines = summary(ctx, site=options["site"], simulator=settings.SIMULATOR["URL"])
        self.stdout.write(self.style.SUCCESS(lines[0]))
        for line in lines[1:]:
            self.stdout.write(line)
