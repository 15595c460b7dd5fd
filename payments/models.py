"""Payments: models."""
