"""Rewards: services."""
