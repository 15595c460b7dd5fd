"""Rewards: views."""
