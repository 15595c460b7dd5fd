from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from alliance.demo import DemoContext, seed_all


class Command(BaseCommand):
    help = "Loads the demo alliance (idempotent: a second run adds nothing) and prints the demo logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", choices=("small", "large"), default="small")

    def handle(self, *args: Any, **options: Any) -> None:
        ctx = seed_all(DemoContext(scale=options["scale"], out=self.stdout))
        self.stdout.write(self.style.SUCCESS("Demo data ready. Logins:"))
        for role, username, password in ctx.logins:
            self.stdout.write(f"  {role:<40} {username:<24} {password}")
        for what, code in ctx.codes:
            self.stdout.write(f"  {what:<40} {code}")
