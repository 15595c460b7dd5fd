"""The alliance's admin, one module per concern (each registers its own models)."""

from . import (
    clearing_admin,  # noqa: F401 - registers clearing's admins
    revenue_admin,  # noqa: F401 - registers the revenue share's admins
    segments_admin,  # noqa: F401 - registers the segment rules' and derivations' admins
)
