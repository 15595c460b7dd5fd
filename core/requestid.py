"""The request id: one per request or job, carried in a context variable to every log line."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_VALID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """Use the caller's id when it is a sane token, otherwise mint one (never echo arbitrary input into logs)."""
    if incoming and _VALID.match(incoming):
        return incoming
    return new_request_id()


def get_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> object:
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]
