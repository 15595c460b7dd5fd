"""Two cardholders binding the same card at the same moment: exactly one binding wins (PostgreSQL, real threads)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from core.errors import Conflict
from members import services
from members.issuers import SandboxIssuerVerifier
from members.models import BindingStatus, Card
from tests.factories import BinRangeFactory, card_number_for, make_cardholder


@pytest.mark.django_db(transaction=True)
def test_concurrent_bindings_of_one_card_leave_one_live() -> None:
    bin_range = BinRangeFactory()
    pan = card_number_for(bin_range, 31337)
    verifier = SandboxIssuerVerifier()
    holders = [make_cardholder(), make_cardholder()]
    challenges = [
        services.card_bind_start(cardholder=h, card_number=pan, expiry_month=1, expiry_year=2032, verifier=verifier)
        for h in holders
    ]
    codes = [verifier.code_for(h.phone_hash, c.issuer_reference) for h, c in zip(holders, challenges, strict=True)]
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def bind(index: int) -> None:
        try:
            barrier.wait()
            outcomes[index] = services.binding_verify(
                cardholder=holders[index], challenge_id=challenges[index].pk, code=codes[index], verifier=verifier
            )
        except Conflict as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=bind, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["Card", "Conflict"]
    assert Card.objects.filter(status=BindingStatus.ACTIVE).count() == 1
    assert Card.objects.filter(status=BindingStatus.CLOSED).count() == 1
