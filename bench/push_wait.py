"""Waiting for a job's end: notification latency and Redis commands per waiting client, the
event-driven GeoQueue.wait (the ledger's pub/sub) against today's polling (a record read every
0.5 s), same redis-server, same jobs.

Latency: `clients` threads each wait on a job of their own; the jobs end one by one at random
moments, and the latency is the time from the transition call to the waiting thread holding the
finished record (one process, one clock). Load: the same number of clients wait on jobs that do
not end during `window` seconds; Redis's own count of commands processed, per client, per minute.

    python bench/push_wait.py                # 50 clients, 60 s load window
    python bench/push_wait.py --ci           # 10 clients, 10 s
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_server import redis_server
from geoqueue import GeoQueue
from geoqueue.job_record import CANCELED, SUCCEEDED, Job

POLL_SECONDS = 0.5  # today's wait() and watch()


def polling_wait(queue: GeoQueue, job_id: str, timeout: float) -> Job:
    """GeoQueue.wait as it was: read the record, sleep half a second, until it has finished."""
    deadline = time.monotonic() + timeout
    while True:
        job = queue.status(job_id)
        if job.finished or time.monotonic() >= deadline:
            return job
        time.sleep(POLL_SECONDS)


def push_wait(queue: GeoQueue, job_id: str, timeout: float) -> Job:
    try:
        return queue.wait(job_id, timeout=timeout, raise_on_failure=False)
    except TimeoutError:
        return queue.status(job_id)


WAITS = {"push (events)": push_wait, "polling 0.5 s": polling_wait}


def latencies(url: str, wait, clients: int, seed: int) -> list[float]:
    queue = GeoQueue(url)
    ids = [f"lat-{wait.__name__}-{seed}-{n}" for n in range(clients)]
    for job_id in ids:
        queue.ledger.create(job_id, "immersity.batch", {})
    returned: dict[str, float] = {}

    def waiter(job_id: str) -> None:
        wait(GeoQueue(url), job_id, 60)
        returned[job_id] = time.perf_counter()

    threads = [threading.Thread(target=waiter, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    time.sleep(1)  # every client is waiting
    ended: dict[str, float] = {}
    rng = random.Random(seed)
    for job_id in ids:
        time.sleep(rng.uniform(0.02, 0.2))
        ended[job_id] = time.perf_counter()
        queue.ledger.transition(job_id, SUCCEEDED, result={"ok": True})
    for thread in threads:
        thread.join()
    return [returned[job_id] - ended[job_id] for job_id in ids]


def commands_per_client_minute(url: str, wait, clients: int, window: float, seed: int) -> float:
    queue = GeoQueue(url)
    ids = [f"load-{wait.__name__}-{seed}-{n}" for n in range(clients)]
    for job_id in ids:
        queue.ledger.create(job_id, "immersity.batch", {})
    threads = [threading.Thread(target=wait, args=(GeoQueue(url), job_id, window + 5)) for job_id in ids]
    for thread in threads:
        thread.start()
    time.sleep(2)  # past subscribing and the first read
    before = queue.redis.info("stats")["total_commands_processed"]
    time.sleep(window)
    after = queue.redis.info("stats")["total_commands_processed"]
    for job_id in ids:
        queue.ledger.transition(job_id, CANCELED)
    for thread in threads:
        thread.join()
    return max(0, after - before - 1) / clients / (window / 60)  # less the first INFO call


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ci", action="store_true", help="10 clients, a 10 s window, one round")
    args = parser.parse_args()
    if args.ci:
        args.clients, args.window, args.rounds = 10, 10.0, 1
    results = {name: {"latency": [], "commands": []} for name in WAITS}
    with redis_server() as client:
        url = client.connection_pool.connection_kwargs
        url = f"redis://{url['host']}:{url['port']}/0"
        for round_ in range(args.rounds):  # rounds alternate, so drift on a shared machine hits both
            for name, wait in WAITS.items():
                results[name]["latency"] += latencies(url, wait, args.clients, round_)
                results[name]["commands"].append(commands_per_client_minute(url, wait, args.clients, args.window,
                                                                            round_))
    print(f"{args.clients} waiting clients, {args.rounds} round(s), load window {args.window:g} s")
    print(f"{'':16} {'latency p50 ms':>15} {'p95 ms':>9} {'commands/client/min':>20}")
    summary = {}
    for name, found in results.items():
        p50, p95 = percentile(found["latency"], 0.5) * 1000, percentile(found["latency"], 0.95) * 1000
        commands = statistics.mean(found["commands"])
        summary[name] = (p50, p95, commands)
        print(f"{name:16} {p50:15.1f} {p95:9.1f} {commands:20.1f}")
    (push_p50, push_p95, push_cmd), (poll_p50, poll_p95, poll_cmd) = summary.values()
    print(f"{'polling/push':16} {poll_p50 / push_p50:15.0f}x {poll_p95 / push_p95:8.0f}x "
          f"{poll_cmd / max(push_cmd, 0.01):19.0f}x")


if __name__ == "__main__":
    main()
