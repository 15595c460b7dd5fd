"""The API's one parser: JSON, whose body is an object."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from .inputs import check_body


class StrictJSONParser(JSONParser):
    """A body is one JSON object (an empty body stands for `{}`; `null`, a list or a number is refused), its strings
    free of control characters. JSON whose nesting is too deep for the decoder is a parse error like any other, not a
    crash."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        if not isinstance(data, dict):
            raise exceptions.ParseError("The request body must be a JSON object.")
        check_body(data)
        return data
