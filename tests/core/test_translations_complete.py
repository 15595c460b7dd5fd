"""Translations are complete: every message the code and the templates mark for translation has a zh-hans
translation in locale/zh_Hans, and the portal's templates show no text outside the translation tags.

The messages are extracted as `make messages` extracts them (Django's makemessages, the same options), but into a
scratch directory, so the test never touches locale/. A message added without its translation, or changed since
the catalogue was made, fails here until `make messages` has run and the new entries are translated. English needs
no catalogue entries: its messages are the English source text itself.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import call_command
from django.template.base import Lexer, TokenType

ROOT = Path(settings.BASE_DIR)
CATALOGUE = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
# What `make messages` leaves out, and what is not source.
NOT_SOURCE = {".venv", "var", "locale", ".git", ".ci", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

# The portal's templates: what cardholders (and merchants applying) read. The admin's templates are Django's.
PORTAL_TEMPLATES = sorted(
    path
    for app in ("core", "members", "merchants", "rewards", "payments", "alliance")
    for path in (ROOT / app / "templates").rglob("*.html")
    if "admin" not in path.relative_to(ROOT / app / "templates").parts
)
# Text that is the same in every language: the brand (one mark, 盟卡 Mengka) and symbols.
NOT_WORDS = {"盟卡", "Mengka"}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> polib.POFile:
    """The messages of the code and templates, as `make messages` extracts them, into a scratch locale dir."""
    if shutil.which("xgettext") is None:
        pytest.skip("needs GNU gettext (xgettext), as make messages does: apt-get install gettext")
    scratch = tmp_path_factory.mktemp("messages")
    for entry in ROOT.iterdir():  # the sources, seen through links, with no locale dir of their own
        if entry.name not in NOT_SOURCE and not entry.name.startswith("."):
            (scratch / entry.name).symlink_to(entry)
    (scratch / "locale").mkdir()
    here = Path.cwd()
    os.chdir(scratch)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(settings, "LOCALE_PATHS", [scratch / "locale"])
            call_command("makemessages", locale=["zh_Hans"], symlinks=True, ignore_patterns=["var"], verbosity=0)
    finally:
        os.chdir(here)
    return polib.pofile(str(scratch / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"))


def _key(entry: polib.POEntry) -> tuple[str | None, str, str]:
    return entry.msgctxt, entry.msgid, entry.msgid_plural


def _translated(entry: polib.POEntry) -> bool:
    if entry.obsolete or "fuzzy" in entry.flags:
        return False
    if entry.msgid_plural:
        return bool(entry.msgstr_plural) and all(entry.msgstr_plural.values())
    return bool(entry.msgstr)


def _where(entry: polib.POEntry) -> str:
    return ", ".join(f"{path}:{line}" for path, line in entry.occurrences[:3])


def test_the_extraction_finds_the_sites_messages(extracted: polib.POFile) -> None:
    """A guard for the test below: an extraction that found nothing would find nothing untranslated."""
    ids = {entry.msgid for entry in extracted}
    assert {"Sign in", "My cards", "Privacy choices", "Exchange points"} <= ids
    assert len(ids) > 500


def test_every_message_has_a_zh_hans_translation(extracted: polib.POFile) -> None:
    catalogue = {_key(entry): entry for entry in polib.pofile(str(CATALOGUE)) if not entry.obsolete}
    missing = [
        f"{entry.msgid!r} ({_where(entry)})"
        for entry in extracted
        if entry.msgid and not (_key(entry) in catalogue and _translated(catalogue[_key(entry)]))
    ]
    assert not missing, (
        f"{len(missing)} messages have no zh-hans translation: run `make messages` and translate them in "
        "locale/zh_Hans/LC_MESSAGES/django.po:\n" + "\n".join(missing)
    )


# --- text outside the translation tags -------------------------------------------------------------------------------

LETTER = re.compile(r"[^\W\d_]")
# Attributes a reader sees or hears.
READ_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description"}
MARK = " "  # stands for what a tag or a variable renders: translated, or data (and keeps an HTML tag whole)


def _without_tags(source: str) -> str:
    """The template with every tag, variable and comment replaced by MARK, and with what translation blocks and
    `{% comment %}` hold taken out whole: what is left is the text written in the template itself."""
    out: list[str] = []
    skipping: str | None = None
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0] if token.contents else ""
            if skipping:
                if name == skipping:
                    skipping = None
                continue
            if name in ("blocktranslate", "blocktrans"):
                skipping = "end" + name
            elif name == "comment":
                skipping = "endcomment"
            out.append(MARK)
        elif token.token_type == TokenType.TEXT:
            if not skipping:
                out.append(token.contents)
        elif not skipping and token.token_type == TokenType.VAR:
            out.append(MARK)
    return "".join(out)


class _BareText(HTMLParser):
    """Collects text nodes and read attributes that hold a word of their own."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._raw = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._raw += 1
        for name, value in attrs:
            if name in READ_ATTRIBUTES and value:
                self._check(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._raw:
            self._raw -= 1

    def handle_data(self, data: str) -> None:
        if not self._raw:
            self._check(data)

    def _check(self, text: str) -> None:
        words = [word for word in text.split() if word not in NOT_WORDS]
        if any(LETTER.search(word) for word in words):
            self.found.append(" ".join(text.split()))


def bare_text(source: str) -> list[str]:
    parser = _BareText()
    parser.feed(_without_tags(source))
    parser.close()
    return parser.found


def _portal_templates() -> Iterator[Path]:
    yield from PORTAL_TEMPLATES


def test_the_scan_finds_text_outside_the_tags() -> None:
    """The scan below would pass on nothing: it must flag bare words, in text and in read attributes, and only them."""
    assert bare_text('<p>{% translate "Fine" %} Bare words</p>') == ["Bare words"]
    assert bare_text('<img alt="A picture"><a title="{% translate "x" %}">{{ name }}</a>') == ["A picture"]
    assert bare_text("<h1>未翻译</h1>") == ["未翻译"]
    assert bare_text('<details{% if x %} open{% endif %}><summary>{% translate "Text" %}</summary></details>') == []
    assert bare_text("{% blocktranslate %}Hello {{ name }}{% endblocktranslate %} · ¥{{ v }} •••• 42") == []
    assert bare_text('{% comment %}A note{% endcomment %}<script>var a = "b";</script><a class="brand">盟卡</a>') == []


@pytest.mark.parametrize("template", PORTAL_TEMPLATES, ids=[str(p.relative_to(ROOT)) for p in PORTAL_TEMPLATES])
def test_portal_templates_show_no_text_outside_the_translation_tags(template: Path) -> None:
    assert bare_text(template.read_text()) == []
