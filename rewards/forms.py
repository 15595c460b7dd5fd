"""Rewards: forms."""
