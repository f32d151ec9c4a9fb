"""dronemapper jobs (see README)."""
