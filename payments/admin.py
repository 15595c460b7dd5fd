"""Payments: admin."""
