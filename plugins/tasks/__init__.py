"""Built-in task plugins and their private helpers."""
