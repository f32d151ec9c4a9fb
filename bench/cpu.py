"""CPU seconds that processes spent (user + system), for the benchmarks' "ours" figures: geoqueue's
worker process trees and redis-server, not the stand-ins or moto sharing the machine.

A prefork worker replaces its children (max tasks per child): the seconds of a child that has
exited count in its parent's `children_*` times once reaped, so each process contributes its own
and its reaped children's seconds.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import psutil


def cpu_seconds(*groups: Callable[[], Iterable[psutil.Process]]) -> float:
    total = 0.0
    for processes in groups:
        for process in processes():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


class CpuMeter:
    """CPU seconds of some process groups between two readings: `with CpuMeter(tree(pid)) as m: ...; m.seconds`."""

    def __init__(self, *groups: Callable[[], Iterable[psutil.Process]]) -> None:
        self.groups = groups
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = cpu_seconds(*self.groups)
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = cpu_seconds(*self.groups) - self._start
