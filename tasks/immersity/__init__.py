"""Immersity jobs: see jobs.py."""
