"""What every vendor stand-in shares: a URL prefix, counters, faults and a control surface."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from flask import Blueprint, request

from sandbox.counters import CallCounter
from sandbox.faults import FaultInjector


class VendorStandIn:
    """Base of a stand-in. Subclasses add their routes in `register(bp)` and keep state under `self.lock`."""

    name: str = ""

    def __init__(self, public_url: str = "") -> None:
        self.lock = threading.RLock()
        self.calls = CallCounter()
        self.faults = FaultInjector()
        self.options: dict[str, Any] = dict(self.default_options())
        # The last requests served (time, method, path, status), for tests that check timing or order.
        self.journal: deque[tuple[float, str, str, int]] = deque(maxlen=20000)
        # Where this stand-in is reachable from outside (for URLs it hands out); set by the server.
        self.public_url = public_url

    # --- to override ---
    def default_options(self) -> dict[str, Any]:
        return {}

    def register(self, bp: Blueprint) -> None:
        raise NotImplementedError

    def reset_state(self) -> None:
        """Forget everything the vendor stored (accounts stay as configured)."""

    # --- shared ---
    def blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__, url_prefix=f"/{self.name}")
        bp.before_request(self.faults.before_request)
        bp.after_request(self._note)
        bp.after_request(self.faults.after_request)   # (Flask runs these last first: the journal notes the late answer)
        self.register(bp)
        return bp

    def _note(self, response):
        self.journal.append((time.time(), request.method, request.path, response.status_code))
        return response

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            unknown = set(values) - set(self.options)
            if unknown:
                raise ValueError(f"unknown {self.name} option(s): {', '.join(sorted(unknown))}")
            for key, value in values.items():
                self.options[key] = value
            return dict(self.options)

    def reset(self) -> None:
        with self.lock:
            self.options = dict(self.default_options())
            self.calls.reset()
            self.faults.reset()
            self.journal.clear()
            self.reset_state()
