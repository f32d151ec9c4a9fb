"""Immersal jobs: see jobs.py."""
