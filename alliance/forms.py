"""Alliance: forms."""
