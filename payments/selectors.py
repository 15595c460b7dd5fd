"""Payments: selectors."""
