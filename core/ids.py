"""Public ids: a prefix naming the kind of object, then URL-safe characters (no `-` or `_`).

Most are 24 random characters. An object kept in monthly partitions (docs/scaling.md) gets a timed id instead: its
time first — 10 Crockford base-32 digits of the Unix time in milliseconds — then 22 random characters (128 bits), so
a lookup by id knows the millisecond, hence the month, it was made in and reads that one partition.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TIME_DIGITS = 10  # 50 bits of milliseconds: good until the year 37648
TIMED_LENGTH = TIME_DIGITS + 22
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def _random(nbytes: int) -> str:
    return secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")


def new_public_id(prefix: str, *, at: datetime | None = None) -> str:
    """A random id, or with `at` (an aware datetime: the object's creation time) a timed one."""
    if at is None:
        return f"{prefix}_{_random(18)}"
    ms = (at - EPOCH) // MILLISECOND
    digits = "".join(CROCKFORD[(ms >> shift) & 31] for shift in range(5 * (TIME_DIGITS - 1), -1, -5))
    return f"{prefix}_{digits}{_random(16)}"


def public_id_time(public_id: str, prefix: str) -> datetime | None:
    """The millisecond a timed id of `prefix` was made in (its object's time, truncated); None for a random id or
    anything else."""
    head, _, body = public_id.partition("_")
    if head != prefix or len(body) != TIMED_LENGTH:
        return None
    ms = 0
    for char in body[:TIME_DIGITS]:
        value = CROCKFORD.find(char)
        if value < 0:
            return None
        ms = ms * 32 + value
    return EPOCH + ms * MILLISECOND
