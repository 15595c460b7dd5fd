"""Alliance: apis."""
