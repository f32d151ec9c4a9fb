"""Dispatch overhead: N no-op tasks through geoqueue's configured app vs plain Celery defaults,
same Redis, same worker concurrency, measured in one run (rounds alternate to share the noise).

    python bench/dispatch.py [--tasks 2000] [--concurrency 2] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.local_stack import (  # noqa: E402
    free_port,
    redis_answers,
    redis_server_binary,
    wait_until,
)


def start_worker(app: str, queue: str, concurrency: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", f"bench.apps:{app}", "worker", "-Q", queue, "-c", str(concurrency), "-n", f"{queue}@%h",
         "--loglevel", "WARNING", "--without-mingle", "--without-gossip"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def run_round(noop, count: int) -> float:
    from celery import group

    started = time.perf_counter()
    results = group(noop.s(i) for i in range(count)).apply_async()
    values = results.get(timeout=600)
    elapsed = time.perf_counter() - started
    assert values == list(range(count))
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen([redis_server_binary(), "--port", str(port), "--save", "", "--dir", data],
                             stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_answers(url), 20, "redis")
    env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    os.environ["BENCH_REDIS_URL"] = url
    from bench import apps

    workers = [start_worker("geoqueue_app", "bench-geoqueue", args.concurrency, env),
               start_worker("plain_app", "bench-plain", args.concurrency, env)]
    try:
        for noop in (apps.geoqueue_noop, apps.plain_noop):
            run_round(noop, 50)  # warm up: connections, pool processes
        rates = {"geoqueue": [], "plain": []}
        for _ in range(args.rounds):
            rates["geoqueue"].append(run_round(apps.geoqueue_noop, args.tasks))
            rates["plain"].append(run_round(apps.plain_noop, args.tasks))
        best = {name: max(values) for name, values in rates.items()}
        print(f"tasks per round: {args.tasks}, worker concurrency: {args.concurrency}, rounds: {args.rounds}")
        for name, values in rates.items():
            print(f"  {name:<9} {best[name]:8.0f} tasks/s (rounds: {', '.join(f'{v:.0f}' for v in values)})")
        print(f"  ratio geoqueue/plain: {best['geoqueue'] / best['plain']:.2f}")
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        redis.terminate()


if __name__ == "__main__":
    main()
