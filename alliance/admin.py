"""Alliance: admin."""
