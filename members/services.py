"""Members: services."""
