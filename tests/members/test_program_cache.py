"""A bank's active points programme is cached per process, and forgotten when a programme changes."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from members.selectors import active_program
from tests.factories import MemberBankFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db


def test_the_programme_is_read_once_within_the_ttl_and_again_after_a_change(settings: Any) -> None:
    settings.POINTS_PROGRAM_CACHE_TTL = 60
    bank = MemberBankFactory()
    program = PointsProgramFactory(bank=bank)
    with CaptureQueriesContext(connection) as queries:
        assert active_program(bank.pk) == program
        assert active_program(bank.pk) == program
    assert len(queries.captured_queries) == 1
    program.active = False
    program.save()  # this process forgets its copy at once
    assert active_program(bank.pk) is None
    other = MemberBankFactory()
    assert active_program(other.pk) is None  # no programme is cached as None too


def test_without_a_ttl_every_read_goes_to_the_database(settings: Any) -> None:
    settings.POINTS_PROGRAM_CACHE_TTL = 0
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    with CaptureQueriesContext(connection) as queries:
        active_program(bank.pk)
        active_program(bank.pk)
    assert len(queries.captured_queries) == 2
