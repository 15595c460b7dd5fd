"""Rewards: models."""
