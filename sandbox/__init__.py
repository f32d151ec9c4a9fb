"""Offline, stateful stand-ins for the four vendors (and S3 via moto), for development and tests.

Production code never imports this package.
"""
