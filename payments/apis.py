"""Payments: apis."""
