"""What the tests read back from the fleet: a failed job's typed error, what waits in the queues,
the exporter's metrics, beat's sends, and the `geoqueue` command's answers."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime

import redis
import requests

from devstack.waiting import wait_until
from geoqueue import GeoQueue


def failed_with(queue: GeoQueue, job_id: str, kind: str, field: str | None, timeout: float = 60) -> dict:
    """The job's error, once it failed with error type `kind` naming `field`."""
    # A message sent without submit has no record until a worker takes it.
    wait_until(lambda: queue.ledger.get(job_id), timeout, f"a record of job {job_id}", interval=0.05)
    job = queue.wait(job_id, timeout=timeout, raise_on_failure=False)
    assert job.state == "failed", job
    assert (job.error["type"], job.error.get("field")) == (kind, field), job.error
    return job.error


def enqueued(stack) -> tuple[int, int]:
    """Messages waiting in the queues, and job records."""
    client = redis.Redis.from_url(stack.redis_url)
    return sum(client.llen(queue) for queue in ("control", "transfer")), \
        sum(int(count) for count in client.hvals("gq:jobs:counts"))


def scrape(url: str) -> dict[str, float]:
    """Every sample a Prometheus exporter shows, by its name and labels."""
    values = {}
    for line in requests.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


BEAT_SEND = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+): INFO/MainProcess\] "
                       r"Scheduler: Sending due task poll-immersal")


def sends(log: str) -> list[float]:
    """When a beat's log says it sent the Immersal poller."""
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in BEAT_SEND.finditer(log)]


def geoqueue(stack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The `geoqueue` command, run as a user runs it, against the stack."""
    return subprocess.run([sys.executable, "-m", "geoqueue.cli", "--redis-url", stack.redis_url, *args],
                          capture_output=True, text=True, timeout=timeout)
