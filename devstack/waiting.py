"""Waiting for something a process is to do: a check asked again until it holds, or a deadline."""
from __future__ import annotations

import time


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    """`check()`'s first truthy answer, asked every `interval` seconds; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:g}s")
