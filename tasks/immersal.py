"""immersal jobs (see README)."""
