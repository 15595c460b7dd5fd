"""Helpers for tests of the cardholder portal's points pages."""

from __future__ import annotations

from typing import Any

from django.test import Client

from rewards import selectors
from tests.factories import PASSWORD


def signed_in(holder: Any, *, language: str | None = None) -> Client:
    """A browser signed in as `holder` (a cardholder), asking for `language` when given."""
    client = Client(headers={"accept-language": language}) if language else Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    return client


def posted(holder: Any, program: Any) -> int:
    """The points posted in the holder's wallet of `program` (0 without a wallet)."""
    wallet = selectors.cardholder_wallet(cardholder_id=holder.pk, program_id=program.pk)
    return wallet.posted if wallet is not None else 0
