"""Members: forms."""
