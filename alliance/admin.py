"""The alliance's admin, one module per concern (each registers its own models)."""

from . import revenue_admin  # noqa: F401  (registers the revenue share's models)
