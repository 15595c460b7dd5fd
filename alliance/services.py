"""Alliance: services."""
