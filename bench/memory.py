"""Peak resident memory of processes, sampled every 20 ms in the background: for the benchmarks,
and for the tests that bound a worker's memory."""
from __future__ import annotations

import threading
from collections.abc import Callable

import psutil

MiB = 1 << 20


def process_tree(pid: int) -> Callable[[], list[psutil.Process]]:
    """A process and its children (a prefork worker and its pool), looked up at every sample."""
    root = psutil.Process(pid)
    return lambda: [root, *root.children(recursive=True)]


class PeakMemory:
    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        self.processes = processes
        self.start = self.sample()
        self.peak = dict(self.start)                 # pid -> highest RSS seen
        self.peak_total = sum(self.start.values())   # highest RSS of all of them together
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[int, int]:
        found = {}
        for process in self.processes():
            try:
                found[process.pid] = process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            rss = self.sample()
            for pid, value in rss.items():
                self.peak[pid] = max(self.peak.get(pid, 0), value)
            self.peak_total = max(self.peak_total, sum(rss.values()))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def highest(self) -> tuple[float, float]:
        """The largest peak of one process and its growth over its start, in MiB."""
        pid = max(self.peak, key=self.peak.get)
        return self.peak[pid] / MiB, (self.peak[pid] - self.start.get(pid, 0)) / MiB

    def growth(self) -> int:
        """Bytes the largest process grew beyond the largest one at the start."""
        return max(self.peak.values()) - max(self.start.values())
