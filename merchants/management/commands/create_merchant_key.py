"""Prints a new API key for a merchant (the only time the key is shown)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import MengkaError
from merchants.models import ApiKey, Merchant, Mode
from merchants.services import api_key_create


class Command(BaseCommand):
    help = "Creates an API key for a merchant and prints it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("merchant_code")
        parser.add_argument("--mode", choices=Mode.values, default=Mode.TEST)
        parser.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.WRITE)

    def handle(self, *args: Any, **options: Any) -> None:
        merchant = Merchant.objects.filter(code=options["merchant_code"]).first()
        if merchant is None:
            raise CommandError(f"No merchant with code {options['merchant_code']!r}.")
        try:
            issued = api_key_create(merchant=merchant, mode=options["mode"], scope=options["scope"])
        except MengkaError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.raw_key)
        self.stderr.write(f"{options['mode']} {options['scope']} key for {merchant.code}; it is not shown again.")
