"""Dronemapper jobs: see jobs.py."""
