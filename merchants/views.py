"""Merchants: views."""
