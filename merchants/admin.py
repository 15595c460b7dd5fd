"""Merchants: admin."""
