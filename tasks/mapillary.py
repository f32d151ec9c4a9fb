"""mapillary jobs (see README)."""
