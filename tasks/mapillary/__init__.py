"""Mapillary jobs: see jobs.py."""
