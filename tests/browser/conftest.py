"""The browser suite: Playwright driving the system's chromium (Debian's `chromium` package; never a downloaded one)
against pytest-django's live server.

Without chromium or Playwright the tests are skipped, each with the reason; in CI (`CI=true`) that is a failure
instead. `make browser` installs chromium when it can (as root) and runs them. Screenshots of every page at every
size go to var/screenshots/<size>/<page>.png (git-ignored), kept as the run's artefacts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import SIZES
from tests.factories import restore_operator_groups


def chromium_path() -> str | None:
    """CHROMIUM_PATH when set, else Debian's chromium (or chromium-browser) on the PATH."""
    for name in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: pip install -e '.[dev]'")
    path = chromium_path()
    if path is None:
        _unavailable("no chromium on this machine: apt-get install -y chromium (make browser does it as root)")
    # Playwright's synchronous API keeps an event loop on this thread; Django refuses ORM calls while one exists.
    # The test thread only seeds and checks the database between browser calls, never inside one, so that
    # guard is lifted for the browser tests alone and put back after them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
            yield browser
            browser.close()


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Any]:
    """`open_page(size, javascript=True)`: a page in a browser of its own (its own cookies), closed after the test."""
    contexts: list[Any] = []

    def opened(size: str, *, javascript: bool = True) -> Any:
        context = chromium.new_context(viewport=SIZES[size], java_script_enabled=javascript, locale="zh-CN")
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield opened
    for context in contexts:
        context.close()


@pytest.fixture(autouse=True)
def operator_groups(request: pytest.FixtureRequest, operator_groups_snapshot: dict[str, list[tuple[str, str]]]) -> None:
    """Each browser test starts with the operator groups and their permissions, whatever a test before it flushed."""
    if "transactional_db" not in request.fixturenames and not request.node.get_closest_marker("django_db"):
        return
    request.getfixturevalue("transactional_db")
    restore_operator_groups(operator_groups_snapshot)
