"""Connectors by name: a plain registry. A real bank's connector is a subclass and one `register` call away."""

from __future__ import annotations

from collections.abc import Callable

from .base import Connector

_factories: dict[str, Callable[[], Connector]] = {}
_instances: dict[str, Connector] = {}


def register(name: str, factory: Callable[[], Connector]) -> None:
    _factories[name] = factory
    _instances.pop(name, None)


def get_connector(name: str) -> Connector:
    if name not in _instances:
        try:
            factory = _factories[name]
        except KeyError:
            raise LookupError(f"no connector registered as {name!r}") from None
        _instances[name] = factory()
    return _instances[name]


def reset_connectors() -> None:
    """Forget built instances (tests that change connector settings)."""
    _instances.clear()


def _register_defaults() -> None:
    from .http import SimulatorConnector
    from .inprocess import InProcessConnector

    register("inprocess", InProcessConnector)
    register("simulator", SimulatorConnector)


_register_defaults()
