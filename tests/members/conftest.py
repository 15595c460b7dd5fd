from __future__ import annotations

from typing import Any

import pytest

from members.issuers import SandboxIssuerVerifier
from tests.factories import BinRangeFactory, card_number_for, make_cardholder


@pytest.fixture
def verifier() -> SandboxIssuerVerifier:
    return SandboxIssuerVerifier()


@pytest.fixture
def bin_range(db: Any) -> Any:
    return BinRangeFactory(prefix="622848")


@pytest.fixture
def holder(db: Any) -> Any:
    return make_cardholder(phone="13700000001")


@pytest.fixture
def pan(bin_range: Any) -> str:
    return card_number_for(bin_range, 1234567)
