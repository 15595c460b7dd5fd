"""Alliance: tasks."""
