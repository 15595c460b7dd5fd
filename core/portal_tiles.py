"""Portal tiles: the small summaries the cardholder's home page shows from apps it cannot import.

The home page belongs to `members`, the leftmost domain app, yet "this month's spending" is the payments app's and
"my points" the rewards app's. Each app registers its tiles here from its `AppConfig.ready()`; the home page asks
`tiles_for(cardholder)` and renders what comes back, in a stable order, without knowing who drew them.

A tile's provider is called once per home page with the signed-in cardholder and must cost a fixed number of
queries (one aggregate at most), whatever the cardholder holds: the home page's query count is pinned by a test.
A provider answers `None` when it has nothing to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tile:
    """What a tile shows: a title, a headline figure or phrase, the page it leads to, and an optional line below."""

    title: str
    value: str
    url: str
    note: str = ""


TileProvider = Callable[[Any], "Tile | None"]


class TileRegistry:
    def __init__(self) -> None:
        self._providers: dict[str, tuple[int, TileProvider]] = {}

    def register(self, key: str, provider: TileProvider, *, order: int) -> None:
        """Adds (or, under the same key, replaces: `ready()` may run twice in tests) a tile. Lower `order` first;
        equal orders by key."""
        self._providers[key] = (order, provider)

    def tiles_for(self, cardholder: Any) -> list[Tile]:
        ordered = sorted(self._providers.items(), key=lambda item: (item[1][0], item[0]))
        tiles = (provider(cardholder) for _key, (_order, provider) in ordered)
        return [tile for tile in tiles if tile is not None]


registry = TileRegistry()
register_portal_tile = registry.register
tiles_for = registry.tiles_for
