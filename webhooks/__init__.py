"""Webhooks when a job ends: the deliverer and the check of where a webhook may go."""
