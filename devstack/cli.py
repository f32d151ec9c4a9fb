"""`geoqueue stack` and `geoqueue demo`: the commands this package adds to the `geoqueue` command."""
from __future__ import annotations


def stack(argv: list[str]) -> int:
    """run the whole stack locally (Redis, S3, sandbox vendors, workers, beat, Flower) until Ctrl-C"""
    from devstack.demo import run_stack

    return run_stack()


def demo(argv: list[str]) -> int:
    """run the main job end to end on the embedded stack, then stop it"""
    from devstack.demo import run_demo

    return run_demo()
