"""The alliance's admin. Each concern registers its models from its own module."""

from . import clearing_admin  # noqa: F401 - registers clearing's admins
