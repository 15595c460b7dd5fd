"""Public ids (core/ids.py): random ones, and timed ones that carry their object's millisecond."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from core.ids import new_public_id, public_id_time

UTC = dt.UTC


def test_a_random_id_has_24_characters_and_no_time() -> None:
    public_id = new_public_id("evt")
    prefix, body = public_id.split("_")
    assert prefix == "evt"
    assert len(body) == 24
    assert "-" not in body
    assert public_id_time(public_id, "evt") is None


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(UTC)))
def test_a_timed_id_gives_back_its_millisecond(at: dt.datetime) -> None:
    public_id = new_public_id("evt", at=at)
    assert len(public_id) == len("evt_") + 32
    assert "-" not in public_id[4:]
    assert "_" not in public_id[4:]
    made = public_id_time(public_id, "evt")
    assert made is not None
    assert made <= at < made + dt.timedelta(milliseconds=1)


def test_timed_ids_sort_by_time_and_differ_within_a_millisecond() -> None:
    at = dt.datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    same = {new_public_id("evt", at=at) for _ in range(100)}
    assert len(same) == 100  # the random part tells them apart
    assert {public_id[:14] for public_id in same} == {new_public_id("evt", at=at)[:14]}  # one time head
    assert max(same) < new_public_id("evt", at=at + dt.timedelta(milliseconds=1))  # the next millisecond sorts after


def test_anything_else_has_no_time() -> None:
    timed = new_public_id("evt", at=dt.datetime(2026, 12, 6, tzinfo=UTC))
    for other in (
        timed.replace("evt_", "pi_"),  # another kind's prefix
        "evt" + timed[3:].replace("_", ""),  # no separator
        timed[:-1],  # a character short
        timed + "x",  # one too many
        "evt_" + "U" + timed[5:],  # U is not a Crockford digit
        "evt_" + "-" * 32,
        "",
    ):
        assert public_id_time(other, "evt") is None, other
