"""Verifies the points ledger: zero-sum, balances, lots, negatives, holds and the signed seal chain."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rewards.checks import ledger_verify


class Command(BaseCommand):
    help = "Verify every invariant of the points ledger; exits non-zero naming every violation."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-seals", action="store_true", help="Skip the seal chain.")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        report = ledger_verify(seals=not options["no_seals"])
        for line in report.checked:
            self.stdout.write(f"checked  {line}")
        for line in report.violations:
            self.stderr.write(f"VIOLATION  {line}")
        elapsed = time.monotonic() - started
        if report.violations:
            raise CommandError(f"ledger_check: {len(report.violations)} violation(s) in {elapsed:.2f}s")
        self.stdout.write(self.style.SUCCESS(f"ledger_check: clean in {elapsed:.2f}s"))
