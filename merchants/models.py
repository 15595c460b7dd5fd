"""Merchants: models."""
