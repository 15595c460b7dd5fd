"""Creates the next months' partitions and archives old months now (what the daily job does)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from core.tasks import run_partitions_maintain


class Command(BaseCommand):
    help = "Create the coming months' partitions of the tables partitioned by month, and archive old months."

    def handle(self, *args: Any, **options: Any) -> None:
        result = run_partitions_maintain(echo=self.stdout)  # type: ignore[arg-type]
        self.stdout.write(
            f"partitions: {len(result['created'])} created, {len(result['archived'])} archived,"
            f" {len(result['kept'])} old months kept"
            + "".join(f"\n  created {name}" for name in result["created"])
            + "".join(f"\n  archived {name}" for name in result["archived"])
            + "".join(f"\n  kept {reason}" for reason in result["kept"])
        )
