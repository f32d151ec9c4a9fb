"""Thread-safe counters of what a stand-in served, so tests can prove "exactly once"."""
from __future__ import annotations

import threading
from collections import Counter


class CallCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, kind: str, key: str | None = None) -> None:
        with self._lock:
            self._counts[kind] += 1
            if key is not None:
                self._counts[f"{kind}:{key}"] += 1

    def get(self, kind: str, key: str | None = None) -> int:
        with self._lock:
            return self._counts[kind if key is None else f"{kind}:{key}"]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
