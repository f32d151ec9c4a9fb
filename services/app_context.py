"""Which app the current task works for: the runtime sets it for each task that works for a job
(runtime/tasks.py), and the store checks every read and write against it (services/storage.py).
Outside a job's work (beat's periodic tasks) it is None."""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_working_for: contextvars.ContextVar[str | None] = contextvars.ContextVar("geoqueue_app", default=None)


def current_app() -> str | None:
    return _working_for.get()


@contextlib.contextmanager
def working_for(app: str | None):
    """Reads and writes of the store in this block are checked against `app`'s places."""
    token = _working_for.set(app)
    try:
        yield
    finally:
        _working_for.reset(token)


def carried(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` working for the current app in another thread (a thread pool does not carry it)."""
    app = _working_for.get()

    def run(*args, **kwargs) -> T:
        with working_for(app):
            return fn(*args, **kwargs)

    return run
