"""Alliance: views."""
