"""The job runtime: how a task works for a job, ends it, and does a vendor side effect once."""
