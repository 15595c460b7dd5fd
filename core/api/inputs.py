"""What the API takes from outside before anything reaches the database.

PostgreSQL cannot store a NUL character, and no id, query value or header we read has a use for control characters:
a request carrying them is refused here, with the parameter named, instead of failing in the driver. Body strings may
hold tabs and line breaks (a description, a note); nothing else below U+0020, and no DEL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.errors import MengkaError, NotFound

_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class InvalidCharacters(MengkaError):
    code = "invalid_characters"


def check_path(kwargs: Mapping[str, Any]) -> None:
    """An id in the path with a control character names nothing: 404, as for any unknown id."""
    for name, value in kwargs.items():
        if isinstance(value, str) and _ANY_CONTROL.search(value):
            raise NotFound("No such object.", param=name)


def check_query(params: Mapping[str, Any]) -> None:
    for name in params:
        values = params.getlist(name) if hasattr(params, "getlist") else [params[name]]
        for text in (name, *values):
            if isinstance(text, str) and _ANY_CONTROL.search(text):
                raise InvalidCharacters("Query parameters must not contain control characters.", param=_printable(name))


def check_body(data: Any, path: str = "") -> None:
    """Every key and string of a parsed JSON body, at any depth."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            if _ANY_CONTROL.search(str(key)):
                raise InvalidCharacters("Field names must not contain control characters.", param=path or None)
            check_body(value, name)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_body(value, f"{path}[{index}]")
    elif isinstance(data, str) and _BODY_CONTROL.search(data):
        raise InvalidCharacters(
            "Strings must not contain control characters other than tab and line breaks.", param=path or None
        )


def _printable(name: str) -> str:
    return _ANY_CONTROL.sub("?", name)
