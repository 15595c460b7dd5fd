"""What the browser tests share: the sizes, screenshots, and the checks every page passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
# What a finger taps: buttons, form fields, the menu and its links (links inside running text are exempt, as in
# WCAG's target size rule).
TAP_TARGETS = "button, select, summary, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), .menu nav a"


def screenshot(page: Any, size: str, name: str) -> None:
    folder = SCREENSHOTS / size
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def horizontal_overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def small_tap_targets(page: Any) -> list[str]:
    """The visible tap targets less than 44 px high or wide, described."""
    return list(
        page.evaluate(
            """(selector) => Array.from(document.querySelectorAll(selector))
                .filter((el) => el.checkVisibility({visibilityProperty: true}))
                .map((el) => [el, el.getBoundingClientRect()])
                .filter(([el, box]) => box.width > 0 && (box.height < 44 || box.width < 44))
                .map(([el, box]) => `${el.tagName.toLowerCase()} "${(el.innerText || el.name || '').trim()}" `
                     + `${Math.round(box.width)}x${Math.round(box.height)}`)""",
            TAP_TARGETS,
        )
    )


def heading(page: Any) -> str:
    return " ".join(page.locator("h1").first.inner_text().split())
