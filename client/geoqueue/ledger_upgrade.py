"""A one-off: index a ledger written before the per-state indexes and counters."""
from __future__ import annotations

import os
import time

import redis

from geoqueue.job_record import TERMINAL
from geoqueue.ledger_keys import COUNTS_KEY, EXPIRING_KEY, VENDORS_KEY, index_key, job_key


def upgrade(client: redis.Redis, old_index: str = "gq:jobs", batch: int = 1000) -> int:
    """Index the records of a ledger written before the indexes and counters (one index of every
    job, `gq:jobs`), then drop that index; how many records. Run once per fleet, before new writes:
    `python -m geoqueue.ledger_upgrade upgrade`."""
    moved = 0
    while ids := client.zrange(old_index, 0, batch - 1, withscores=True):
        pipe = client.pipeline(transaction=False)
        for job_id, _ in ids:
            pipe.hmget(job_key(job_id), "vendor", "state")
            pipe.ttl(job_key(job_id))
        found = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for (job_id, created), (vendor, state), ttl in zip(ids, found[::2], found[1::2], strict=True):
            if vendor and state:
                pipe.zadd(index_key(vendor, state), {job_id: created})
                pipe.sadd(VENDORS_KEY, vendor)
                pipe.hincrby(COUNTS_KEY, f"{vendor}/{state}", 1)
                if state in TERMINAL and ttl > 0:
                    pipe.zadd(EXPIRING_KEY, {f"{vendor}/{state}/{job_id}": time.time() + ttl})
                moved += 1
        pipe.zrem(old_index, *[job_id for job_id, _ in ids])
        pipe.execute()
    return moved


if __name__ == "__main__":
    import sys

    from geoqueue.redis_url import connect

    if sys.argv[1:] != ["upgrade"]:
        sys.exit("usage: python -m geoqueue.ledger_upgrade upgrade   (GEOQUEUE_REDIS_URL names the fleet's Redis)")
    url = os.environ.get("GEOQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")
    print(upgrade(connect(url, os.environ.get("GEOQUEUE_REDIS_SENTINEL_MASTER"), decode_responses=True)),
          "records indexed")
