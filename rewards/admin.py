"""Rewards: admin."""
