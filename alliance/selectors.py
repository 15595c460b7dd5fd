"""Alliance: selectors."""
