"""How long to wait before trying again: one rule for vendor calls, task retries and webhooks."""
from __future__ import annotations

import random
from collections.abc import Callable


def backoff(attempt: int, base: float, cap: float, hint: float | None, draw: Callable[[float, float], float]) -> float:
    """Seconds before try `attempt + 1`: full jitter over base * 2**attempt (capped), never shorter
    than the other side's hint (a Retry-After).

    >>> backoff(0, 0.5, 20, None, lambda low, high: high)
    0.5
    >>> backoff(10, 0.5, 20, None, lambda low, high: high)
    20
    >>> backoff(3, 0.5, 20, 7.0, lambda low, high: low)
    7.0
    """
    delay = draw(0.0, min(cap, base * 2 ** attempt))
    return max(delay, hint) if hint is not None else delay


def equal_jitter(low: float, high: float) -> float:
    """A draw from the upper half: spread out, yet never much sooner than the ceiling."""
    return random.uniform(high / 2, high)
