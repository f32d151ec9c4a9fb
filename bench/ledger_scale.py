"""The ledger with many job records: time to list failed jobs, time of a metrics scrape and Redis
memory per job record, today's ledger (one index of every job, walked and filtered; a scrape
reading every record) against the indexed ledger with counters (geoqueue.ledger), same redis-server.

Records are written the way each ledger writes them (the indexed one through its own Lua scripts)
with the same mix: 97% succeeded, 1% failed, 1% canceled, 1% still open (queued, running, waiting),
four vendors at random.

    python bench/ledger_scale.py              # 1,000,000 records each (several minutes)
    python bench/ledger_scale.py --ci         # 20,000 records
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_server import redis_server
from geoqueue.job_record import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, WAITING
from geoqueue.ledger import Ledger
from geoqueue.ledger_keys import job_key

VENDORS = {"immersity": "immersity.batch", "immersal": "immersal.build_map",
           "dronemapper": "dronemapper.process_survey", "mapillary": "mapillary.harvest"}
OPEN = (QUEUED, RUNNING, WAITING)
TTL = 7 * 24 * 3600
BATCH = 5000
OLD_INDEX = "gq:jobs"  # today's one index of every job


def mix(count: int, seed: int = 1) -> list[tuple[str, str, str, float]]:
    """(job id, vendor, final state, created) for `count` jobs, oldest first, ten a second until now
    (a million in a little over a day: none is old enough to expire)."""
    rng = random.Random(seed)
    start = time.time() - count / 10
    out = []
    for n in range(count):
        roll = rng.random()
        state = SUCCEEDED if roll < 0.97 else FAILED if roll < 0.98 else CANCELED if roll < 0.99 \
            else rng.choice(OPEN)
        out.append((f"{n:032x}", rng.choice(list(VENDORS)), state, start + n / 10))
    return out


def record(job_id: str, vendor: str, state: str, created: float) -> dict:
    """A finished record's fields, as both ledgers hold them."""
    done = state not in OPEN
    return {"id": job_id, "name": VENDORS[vendor], "vendor": vendor, "state": state, "phase": state, "done": 12,
            "total": 12, "params": json.dumps({"prefix": f"s3://photos/{job_id[:8]}/"}), "created": created,
            "updated": created + 60, "credits": 120, "sent": created,
            **({"result": json.dumps({"images": 12, "succeeded": 12}), "error": "null"} if done else {})}


# --- today's ledger (before this change): one index, filters by reading every record ---
def load_before(client: redis.Redis, mixed: list) -> None:
    pipe = client.pipeline(transaction=False)
    for n, (job_id, vendor, state, created) in enumerate(mixed):
        key = job_key(job_id)
        pipe.hset(key, mapping=record(job_id, vendor, state, created))
        pipe.zadd(OLD_INDEX, {job_id: created})
        if state not in OPEN:
            pipe.expire(key, TTL)
        if n % BATCH == BATCH - 1:
            pipe.execute()
    pipe.execute()


def list_before(client: redis.Redis, limit: int, state: str, vendor: str | None = None) -> list[str]:
    """Ledger.recent as it was: newest ids 200 at a time, each record read, filtered here."""
    found, start = [], 0
    while len(found) < limit:
        ids = client.zrevrange(OLD_INDEX, start, start + 199)
        if not ids:
            break
        start += len(ids)
        for job_id in ids:
            data = client.hgetall(job_key(job_id))
            if data.get("state") == state and (vendor is None or data.get("vendor") == vendor):
                found.append(job_id)
                if len(found) >= limit:
                    break
    return found


def scrape_before(client: redis.Redis) -> Counter:
    """workers.metrics.FleetCollector.job_counts as it was: one HMGET per job ever indexed."""
    ids = client.zrange(OLD_INDEX, 0, -1)
    pipe = client.pipeline()
    for job_id in ids:
        pipe.hmget(job_key(job_id), "vendor", "state")
    return Counter((v, s) for v, s in pipe.execute() if v and s)


# --- the indexed ledger, written through its own scripts ---
def load_after(client: redis.Redis, mixed: list) -> None:
    ledger = Ledger(client, ttl=TTL)
    pipe = client.pipeline(transaction=False)
    for n, (job_id, vendor, state, created) in enumerate(mixed):
        fields = record(job_id, vendor, state, created)
        ledger._create(keys=[job_key(job_id)], client=pipe, args=[
            job_id, fields["created"], fields["name"], fields["params"], vendor, QUEUED,
            *[v for pair in {**fields, "state": QUEUED, "phase": QUEUED}.items() for v in pair]])
        if state != QUEUED:
            extra = {k: fields[k] for k in ("result", "error") if k in fields}
            ledger._transition(keys=[job_key(job_id)], client=pipe, args=[
                state, "0", TTL, fields["updated"], job_id, "1", "phase", state,
                *[v for pair in extra.items() for v in pair], "updated", fields["updated"]])
        if n % BATCH == BATCH - 1:
            pipe.execute()
    pipe.execute()


def timed(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def measure(client: redis.Redis, mixed: list, layout: str) -> dict:
    client.flushall()
    base = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    (load_before if layout == "before" else load_after)(client, mixed)
    loaded = time.perf_counter() - started
    memory = (int(client.info("memory")["used_memory"]) - base) / len(mixed)
    ledger = Ledger(client)
    if layout == "before":
        lists = {
            "50 failed": lambda: list_before(client, 50, FAILED),
            "50 failed of one vendor": lambda: list_before(client, 50, FAILED, "mapillary"),
            "every waiting job": lambda: list_before(client, len(mixed), WAITING),
        }
        scrape = lambda: scrape_before(client)  # noqa: E731
    else:
        lists = {
            "50 failed": lambda: [j.id for j in ledger.recent(50, state=FAILED)],
            "50 failed of one vendor": lambda: [j.id for j in ledger.recent(50, state=FAILED, vendor="mapillary")],
            "every waiting job": lambda: [j.id for j in ledger.recent(len(mixed), state=WAITING)],
        }
        scrape = lambda: (ledger.expire_due(), ledger.counts())[1]  # noqa: E731
    out = {"load s": loaded, "bytes per record": memory}
    for name, fn in lists.items():
        out[f"list {name} (ms)"], value = timed(fn, 3)
        out[f"list {name} (ms)"] *= 1000
        out[f"list {name} count"] = len(value)
    out["scrape (ms)"], counts = timed(scrape, 3)
    out["scrape (ms)"] *= 1000
    out["counted"] = sum(Counter(counts).values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--ci", action="store_true", help="20,000 records: a quick check that it runs")
    args = parser.parse_args()
    count = 20_000 if args.ci else args.records
    mixed = mix(count)
    with redis_server() as client:
        results = {layout: measure(client, mixed, layout) for layout in ("before", "after")}
    print(f"{count:,} job records; states {dict(Counter(state for _, _, state, _ in mixed))}")
    print(f"{'':34} {'before':>12} {'after':>12} {'before/after':>13}")
    for name in results["before"]:
        before, after = results["before"][name], results["after"][name]
        ratio = f"{before / after:13.1f}" if after and "count" not in name and name != "counted" else ""
        print(f"{name:34} {before:12.1f} {after:12.1f} {ratio}")


if __name__ == "__main__":
    main()
