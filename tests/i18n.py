"""What the site shows for a message in its own language (zh-hans): for tests that read rendered pages."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import translation


def shown(message: str, **values: Any) -> str:
    with translation.override(settings.LANGUAGE_CODE):
        text = translation.gettext(message)
    return text % values if values else text
