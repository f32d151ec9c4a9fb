"""Where a client keeps its access token. The fleet passes a Redis-backed store so every worker
shares one token; alone, a client keeps it in memory."""
from __future__ import annotations

import threading
import time
from typing import Protocol


class TokenStore(Protocol):
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, token: str, ttl_seconds: float) -> None: ...
    def drop(self, key: str) -> None: ...


class MemoryTokenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> str | None:
        with self._lock:
            token, expires = self._tokens.get(key, ("", 0.0))
        return token if token and expires > time.time() else None

    def put(self, key: str, token: str, ttl_seconds: float) -> None:
        with self._lock:
            self._tokens[key] = (token, time.time() + ttl_seconds)

    def drop(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)


def renewal_ttl(lifetime_seconds: float) -> float:
    """Cache a token for most of its life so no call goes out with one about to expire."""
    return max(1.0, min(lifetime_seconds - 30.0, lifetime_seconds * 0.9))
