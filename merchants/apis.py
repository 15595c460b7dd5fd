"""Merchants: apis."""
