"""Payments: forms."""
