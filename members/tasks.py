"""Members: tasks."""
