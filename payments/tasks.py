"""Payments: tasks."""
