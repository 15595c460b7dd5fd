"""Seals new ledger transactions into the signed hash chain (what the periodic job does)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from rewards.tasks import run_ledger_seal


class Command(BaseCommand):
    help = "Seal every unsealed ledger transaction and export the signed heads."

    def handle(self, *args: Any, **options: Any) -> None:
        made = run_ledger_seal(echo=self.stdout)  # type: ignore[arg-type]
        self.stdout.write(f"ledger_seal: {made} seal(s)")
