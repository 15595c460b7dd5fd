"""Merchants: selectors."""
