"""What people see: embeds, progress rendering and the result buttons."""
