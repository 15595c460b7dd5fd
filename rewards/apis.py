"""Rewards: apis."""
