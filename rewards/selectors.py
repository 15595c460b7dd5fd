"""Rewards: selectors."""
