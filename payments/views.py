"""Payments: views."""
