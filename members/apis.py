"""Members: apis."""
