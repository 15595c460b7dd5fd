"""Merchants: tasks."""
