"""Rewards: tasks."""
