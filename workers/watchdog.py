"""Time limits for a pool that cannot kill a task: the threads pool of the transfer queue.

Celery enforces task_soft_time_limit and task_time_limit only in the prefork pool (celery/celery#9203:
a thread cannot be killed). Every vendor call has its own client timeout, so a task never blocks
long inside one call; the watchdog holds the limits over the whole task:

- past the soft limit, SoftTimeLimitExceeded is raised in the task's thread at its next Python
  instruction, and the guard treats it as in prefork (the task is tried again, it resumes from its
  checkpoints, then TimedOut);
- past the hard limit (the task swallowed that, or sits in one C call), the worker exits, as
  prefork kills a child: its messages come back (acks late) and its supervisor starts it again;
  the other tasks it was running are redone under their exactly-once records. A thread blocked in
  a call sees the soft limit only when the call returns, so here the hard limit is the task's
  plus the longest vendor call timeout, and always a little below the visibility timeout.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun, worker_ready

from config.settings import get_settings

log = logging.getLogger("geoqueue.watchdog")
CHECK_SECONDS = 1.0
EXIT_STATUS = 70   # EX_SOFTWARE: the supervisor starts the worker again
VISIBILITY_MARGIN = 5.0


@dataclass
class Running:
    thread: int
    name: str
    started: float
    signaled: bool = False


class Watchdog:
    def __init__(self, soft_seconds: float, hard_seconds: float, exit: Callable[[int], None] = os._exit) -> None:
        self.soft, self.hard, self.exit = soft_seconds, hard_seconds, exit
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()

    def started(self, task_id: str, name: str) -> None:
        with self.lock:
            self.running[task_id] = Running(threading.get_ident(), name, time.monotonic())

    def finished(self, task_id: str) -> None:
        with self.lock:
            run = self.running.pop(task_id, None)
            if run is not None and run.signaled:
                clear_in_thread(run.thread)   # raised as the task ended: it must not hit the next one

    def check(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:   # held while raising: a task that ends meanwhile clears what was raised
            for task_id, run in self.running.items():
                if now - run.started > self.hard:
                    log.critical("task %s[%s] ran past its hard time limit (%ss): the worker exits so that its "
                                 "messages come back", run.name, task_id, self.hard)
                    self.exit(EXIT_STATUS)
                    return
                if now - run.started > self.soft and not run.signaled:
                    run.signaled = True
                    log.warning("task %s[%s] ran past its soft time limit (%ss)", run.name, task_id, self.soft)
                    raise_in_thread(run.thread, SoftTimeLimitExceeded)

    def watch(self) -> None:
        while True:
            time.sleep(CHECK_SECONDS)
            self.check()


def raise_in_thread(thread: int, exception: type[BaseException]) -> None:
    """Raise `exception` in another thread of this process, at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(exception))


def clear_in_thread(thread: int) -> None:
    """Withdraw an exception raised in `thread` that has not fired yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)


_WATCHDOG: Watchdog | None = None


@worker_ready.connect
def _start(sender, **_kwargs) -> None:
    global _WATCHDOG
    if not isinstance(getattr(sender, "pool", None), ThreadsPool):
        return  # prefork enforces the limits itself
    settings = get_settings()
    hard = min(settings.task_time_limit + settings.longest_call_timeout,
               settings.visibility_timeout - VISIBILITY_MARGIN)
    _WATCHDOG = Watchdog(settings.soft_time_limit, hard)
    threading.Thread(target=_WATCHDOG.watch, name="geoqueue-watchdog", daemon=True).start()
    log.info("watchdog on: soft limit %ss, hard limit %ss", _WATCHDOG.soft, _WATCHDOG.hard)


@task_prerun.connect
def _task_started(task_id=None, task=None, **_kwargs) -> None:
    if _WATCHDOG is not None:
        _WATCHDOG.started(task_id, task.name)


@task_postrun.connect
def _task_finished(task_id=None, **_kwargs) -> None:
    if _WATCHDOG is not None:
        _WATCHDOG.finished(task_id)
