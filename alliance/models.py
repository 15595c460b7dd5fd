"""Alliance: models."""
