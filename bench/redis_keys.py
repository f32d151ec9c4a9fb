"""What Redis holds and does, read from Redis itself, for bench/redis_footprint.py: every key's size
(MEMORY USAGE, all of an aggregate's elements counted), grouped by what the key is for, and the
commands Redis ran (INFO commandstats). The reads count themselves, so that a measurement can leave
its own commands out."""
from __future__ import annotations

import re
import threading
import time
from collections import Counter

import redis

# What a key is for, first match wins (key layouts: geoqueue/ledger_keys.py, runtime/, tasks/*/records.py).
KINDS = (
    ("job record", r"gq:job:[^:]+"),
    ("items", r"gq:job:[^:]+:(items|finished)"),
    ("once markers", r"gq:job:[^:]+:once(:.*)?"),
    ("fan-out", r"gq:job:[^:]+:(pending|inflight)|gq:fanouts"),
    ("step records, checkpoints", r"gq:job:[^:]+:(immersal|dronemapper|mly)(:.*)?"),
    ("console, webhook log", r"gq:job:[^:]+:(console|deliveries)"),
    ("job indexes, counts", r"gq:jobs:.*"),
    ("events (gq:ended)", r"gq:ended"),
    ("leases, holders, pollers' sets", r"gq:(holders|immersal:workspace.*|immersal:capture-gate.*|[a-z]+:active)"),
    ("Celery results", r"celery-task-meta-.*"),
    ("Celery messages (queues, unacked)", r"(control|transfer)(\x06\x16\d)?|unacked(_index|_mutex)?"),
    ("rate limits, tokens, claims", r"gq:(token|rate|ratelimit|mapillary|dronemapper:claim|immersal:map-jobs).*"),
    ("other geoqueue", r"gq:.*"),
    ("other (beat, kombu)", r".*"),
)
_PATTERNS = [(kind, re.compile(pattern, re.S)) for kind, pattern in KINDS]


def kind_of(key: str) -> str:
    return next(kind for kind, pattern in _PATTERNS if pattern.fullmatch(key))


class RedisReader:
    """Reads of one Redis that keep count of the commands they sent."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.sent: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _count(self, command: str, n: int = 1) -> None:
        with self.lock:
            self.sent[command] += n

    def sizes(self) -> dict[str, int]:
        """Every key's MEMORY USAGE (SAMPLES 0: every element of an aggregate counted)."""
        keys, cursor = [], None
        while cursor != 0:
            cursor, batch = self.redis.scan(cursor or 0, count=1000)
            keys += batch
            self._count("scan")
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        self._count("memory", len(keys))
        return {key: size for key, size in zip(keys, pipe.execute(), strict=True) if size is not None}

    def info(self, section: str) -> dict:
        self._count("info")
        return self.redis.info(section)

    def command_calls(self) -> Counter[str]:
        """Commands Redis ran so far, by name (a subcommand counts as its command)."""
        calls: Counter[str] = Counter()
        for name, stats in self.info("commandstats").items():
            calls[name.removeprefix("cmdstat_").split("|")[0]] += int(stats["calls"])
        return calls


def grown_by_kind(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Bytes by kind that `after` holds beyond `before` (a key gone or shrunk counts negative)."""
    grown: Counter[str] = Counter()
    for key in before.keys() | after.keys():
        grown[kind_of(key)] += after.get(key, 0) - before.get(key, 0)
    return {kind: grown.get(kind, 0) for kind, _ in KINDS}


def new_keys_by_kind(before: dict[str, int], after: dict[str, int]) -> Counter[str]:
    return Counter(kind_of(key) for key in after.keys() - before.keys())


class PeakMemory:
    """Redis's used_memory, sampled while a job runs: the highest seen above the reading at start."""

    def __init__(self, reader: RedisReader, interval: float = 0.2) -> None:
        self.reader, self.interval = reader, interval
        self.stop, self.peak = threading.Event(), 0
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self.start = int(self.reader.info("memory")["used_memory"])
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(self.interval):
            self.peak = max(self.peak, int(self.reader.info("memory")["used_memory"]) - self.start)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def idle_rates(reader: RedisReader, redis_cpu, seconds: float) -> tuple[Counter[str], float]:
    """Commands per second by name, and Redis CPU seconds per second, of the fleet doing nothing."""
    calls, cpu, started = reader.command_calls(), redis_cpu(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    rates = reader.command_calls() - calls
    rates["info"] = max(0, rates["info"] - 1)           # the reading's own
    return Counter({name: n / elapsed for name, n in rates.items()}), (redis_cpu() - cpu) / elapsed
