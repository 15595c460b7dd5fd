"""Public ids: a prefix naming the kind of object, then 24 URL-safe random characters (no `-` or `_`)."""

from __future__ import annotations

import secrets


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"
