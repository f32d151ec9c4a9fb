"""Immersity AI jobs: see jobs.py."""
