"""Bounding what a Redis failover can lose: a write that matters waits until a replica holds it.

Redis replicates asynchronously, so a write the primary acknowledged may be missing on the replica
promoted in its place. The writes that guard a paid or creating vendor call (a `Once` marker, a
lease grant) and those that record a job's creation or its end are therefore followed by
`WAIT 1 <GEOQUEUE_REDIS_REPLICA_WAIT_MS>`: the writer goes on once one replica acknowledged them, or
once that bound passed (then `Written.held` is False, and the writer decides: a `Once` marker is
taken back and its paid call not made; the others stand, with a warning). WAIT covers the writes
made on its own connection, and on Redis 7 WAIT inside a script returns at once, so it is sent
right after the write in the same pipeline (one round trip, one connection).

Without replicas WAIT would only sit out its bound, so it is skipped: the primary's
`INFO replication` is read at most once every CHECK_SECONDS per connection pool, which is all a
primary without replicas costs. A replica attaching is noticed within that time. Setting the bound
to 0 turns waiting off. README ("Redis: replicas and failovers") says what this bounds and what not.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

log = logging.getLogger("geoqueue.replicas")

WAIT_MS_VARIABLE = "GEOQUEUE_REDIS_REPLICA_WAIT_MS"
DEFAULT_WAIT_MS = 1000
CHECK_SECONDS = 5.0          # how long a primary's count of its replicas is trusted
BARRIER_KEY = "gq:replicas:barrier"

_counts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # pool -> (trusted until, replicas)
_counts_lock = threading.Lock()


def wait_ms() -> int:
    """The bound of one wait (GEOQUEUE_REDIS_REPLICA_WAIT_MS, read from the environment so that a
    producer app without the fleet's settings has it too); 0: never wait."""
    return int(os.environ.get(WAIT_MS_VARIABLE) or DEFAULT_WAIT_MS)


def replicas(client: redis.Redis) -> int:
    """Replicas connected to the primary `client` writes to, as read at most CHECK_SECONDS ago."""
    pool, now = client.connection_pool, time.monotonic()
    with _counts_lock:
        until, count = _counts.get(pool, (0.0, 0))
    if until > now:
        return count
    try:
        count = int(client.info("replication").get("connected_slaves", 0))
    except redis.ResponseError as exc:     # an ACL without INFO: nothing to go by, so nothing waits
        log.warning("INFO replication refused (%s): writes do not wait for replicas", exc)
        count = 0
    with _counts_lock:
        _counts[pool] = (now + CHECK_SECONDS, count)
    return count


def wait_timeout(client: redis.Redis) -> int:
    """Milliseconds to WAIT after a write that matters: 0 when there is no replica to wait for."""
    bound = wait_ms()
    return bound if bound > 0 and replicas(client) > 0 else 0


def add_wait(pipe: Pipeline, timeout_ms: int) -> None:
    """Queue WAIT for one replica after the writes queued on `pipe` so far."""
    pipe.execute_command("WAIT", 1, timeout_ms)


def acknowledged(replicas_acked: int, timeout_ms: int, what: str) -> bool:
    if replicas_acked > 0:
        return True
    log.warning("%s: no replica acknowledged it within %d ms; a failover now could lose it", what, timeout_ms)
    return False


@dataclass(frozen=True)
class Written:
    results: list[Any]
    replicas: int | None      # replicas that acknowledged the writes; None: there was none to wait for

    @property
    def result(self) -> Any:
        return self.results[0]

    @property
    def held(self) -> bool:
        """A replica holds the writes, or there is no replica that could be promoted without them."""
        return self.replicas is None or self.replicas > 0


def write(client: redis.Redis, queue: Callable[[Pipeline], Any], what: str) -> Written:
    """Send the writes `queue` puts on a pipeline and, when the primary has replicas, wait (bounded)
    until one acknowledged them."""
    timeout = wait_timeout(client)
    pipe = client.pipeline(transaction=False)
    queue(pipe)
    if not timeout:
        return Written(pipe.execute(), None)
    add_wait(pipe, timeout)
    *results, acked = pipe.execute()
    acknowledged(int(acked), timeout, what)
    return Written(results, int(acked))


def barrier(client: redis.Redis, what: str) -> bool:
    """Wait (bounded) until a replica holds every write any client made so far: a write of one's own
    on the same connection carries the primary's replication offset, and WAIT waits for it."""
    return write(client, lambda pipe: pipe.incr(BARRIER_KEY), what).held
