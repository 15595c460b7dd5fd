"""Members: views."""
