"""A task's vendor calls in flight at once, at most `limit` of them: the threads of one pool per
process run them, each thread with its own vendor client (services/vendor_clients.py) and so its own
connections, kept from one task to the next; the fleet-wide rate limits (services/rate_limit.py)
hold whatever the number of threads.

    calls = Calls(limit=16)
    calls.add(fetch_batch, number, then=schedule_its_downloads)   # `then(result)` runs in the task's thread
    calls.run()                                                    # until every call added has ended

A call that fails ends the run: calls not begun are dropped, those under way end (each within its
client's timeout and retries) and keep what they checkpointed, and the first failure is raised.
"""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from services.app_context import carried

# Threads are made as calls need them and kept; the bound that matters is each task's `limit`.
POOL_THREADS = 2048
WAKE_SECONDS = 1.0      # the task's thread looks up at least this often (the watchdog's soft limit lands then)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="geoqueue-call")
        return _pool


def _forget_pool_in_child() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()   # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_pool_in_child)


class Calls:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"calls in flight must be at least 1, got {limit}")
        self.limit = limit
        self.waiting: deque[tuple[Callable[..., Any], tuple, Callable[[Any], None] | None]] = deque()
        self.running: dict[Future, Callable[[Any], None] | None] = {}
        self.ended: queue.SimpleQueue[Future] = queue.SimpleQueue()

    def add(self, call: Callable[..., Any], *args: Any, then: Callable[[Any], None] | None = None) -> None:
        self.waiting.append((call, args, then))

    def _next_ended(self) -> Future:
        while True:
            try:
                return self.ended.get(timeout=WAKE_SECONDS)
            except queue.Empty:
                continue

    def run(self) -> None:
        try:
            while self.waiting or self.running:
                while self.waiting and len(self.running) < self.limit:
                    call, args, then = self.waiting.popleft()
                    future = pool().submit(carried(call), *args)  # working for this job's app there too
                    self.running[future] = then
                    future.add_done_callback(self.ended.put)
                future = self._next_ended()
                then = self.running.pop(future)
                result = future.result()
                if then is not None:
                    then(result)
        except BaseException:
            self.waiting.clear()
            while self.running:
                del self.running[self._next_ended()]
            raise
