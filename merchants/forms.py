"""Merchants: forms."""
