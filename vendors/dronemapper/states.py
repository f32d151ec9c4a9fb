"""A DroneMapper task's status codes and the actions it may have pending, as the vendor numbers them."""
from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    QUEUED = 10
    RUNNING = 20
    FAILED = 30
    COMPLETED = 40
    CANCELED = 50


TERMINAL = frozenset({Status.FAILED, Status.COMPLETED, Status.CANCELED})


class PendingAction(IntEnum):
    CANCEL = 1
    REMOVE = 2
    RESTART = 3
