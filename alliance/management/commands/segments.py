from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from alliance import services
from core.errors import MengkaError


class Command(BaseCommand):
    help = (
        "Derives cardholders' segment tags from their payments now, as the nightly job does: only for those who "
        "consent to personalised offers. Running it again changes nothing unless payments, consents or rules did."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = services.segments_compute(echo=self.stdout)  # type: ignore[arg-type]
        except MengkaError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.qualified} qualifying tags; derivations {report.written} written, {report.removed} "
                f"removed; {report.cardholders} cardholders' tags changed"
            )
        )
