"""Seeded fault injection shared by every vendor stand-in.

A vendor's faults are set by configuration (the control API or `python -m sandbox --faults`),
and drawn from one seeded random generator so that a test run repeats.
"""
from __future__ import annotations

import random
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass, fields

from flask import Response, jsonify, request

from sandbox.serving import SOCKET_KEY


@dataclass
class FaultConfig:
    latency_ms: float = 0.0          # added to every request, before it is served
    answer_delay_ms: float = 0.0     # added after it is served: the effect took place, its answer is late
    error_rate: float = 0.0          # share of requests answered 500
    rate_limit_rate: float = 0.0     # share answered 429 with Retry-After
    retry_after_s: float = 1.0
    drop_rate: float = 0.0           # share whose connection is closed without an answer
    seed: int = 0
    # Exact next-N faults, for tests that need "one 500, then success" without chance.
    fail_next: int = 0               # the next N requests answer 500
    rate_limit_next: int = 0         # the next N requests answer 429
    drop_next: int = 0               # the next N requests lose their connection
    paths: str = ""                  # comma-separated path fragments the faults apply to; empty: all
    # Comma-separated regular expressions: when set, the two delays go to the paths they match instead,
    # so that one slow call (a task creation) can widen a window while errors hit every call.
    latency_paths: str = ""

    def update(self, values: dict) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault setting {key!r}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value))


class FaultInjector:
    """Decides, per request, whether to delay, fail, throttle or drop it."""

    def __init__(self, config: FaultConfig | None = None):
        self.config = config or FaultConfig()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)

    def configure(self, values: dict) -> dict:
        with self._lock:
            self.config.update(values)
            if "seed" in values:
                self._rng = random.Random(self.config.seed)
            return asdict(self.config)

    def reset(self) -> None:
        with self._lock:
            self.config = FaultConfig()
            self._rng = random.Random(0)

    def _applies(self, path: str) -> bool:
        wanted = [p for p in self.config.paths.split(",") if p]
        return not wanted or any(p in path for p in wanted)

    def _slowed(self, path: str) -> bool:
        patterns = [p for p in self.config.latency_paths.split(",") if p]
        return any(re.search(p, path) for p in patterns) if patterns else self._applies(path)

    def _draw(self) -> str | None:
        with self._lock:
            c = self.config
            if not self._applies(request.path):
                return None
            for attr, outcome in (("drop_next", "drop"), ("fail_next", "error"), ("rate_limit_next", "throttle")):
                if getattr(c, attr) > 0:
                    setattr(c, attr, getattr(c, attr) - 1)
                    return outcome
            roll = self._rng.random()
            if roll < c.drop_rate:
                return "drop"
            if roll < c.drop_rate + c.error_rate:
                return "error"
            if roll < c.drop_rate + c.error_rate + c.rate_limit_rate:
                return "throttle"
            return None

    def before_request(self) -> Response | None:
        """Flask before_request hook: returns a fault response, or None to go on."""
        if self.config.latency_ms and self._slowed(request.path):
            time.sleep(self.config.latency_ms / 1000.0)
        outcome = self._draw()
        if outcome == "error":
            return Response("Internal Server Error", status=500, mimetype="text/plain")
        if outcome == "throttle":
            response = jsonify({"message": "Too Many Requests"})
            response.status_code = 429
            response.headers["Retry-After"] = f"{self.config.retry_after_s:g}"
            return response
        if outcome == "drop":
            drop_connection()
        return None

    def after_request(self, response: Response) -> Response:
        """Flask after_request hook: hold a served request's answer back (answer_delay_ms)."""
        if self.config.answer_delay_ms and self._slowed(request.path):
            time.sleep(self.config.answer_delay_ms / 1000.0)
        return response


def drop_connection() -> None:
    """Close the client's socket without answering, as a crashed proxy or server would."""
    sock = request.environ.get(SOCKET_KEY)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionAbortedError("sandbox dropped the connection on purpose")
