"""Merchants: services."""
