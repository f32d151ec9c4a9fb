"""Which pool for the transfer queue: what 100 vendor calls in flight cost in worker memory.

One Immersity batch whose every call the stand-in holds for `--hold` seconds, through one transfer
worker per pool, one after the other on one stack: prefork at a few processes (its cost per slot,
100 slots would not fit), threads and gevent at 100. Reported per pool: the peak of calls in flight
at the vendor (the stand-in counts them), the peak RSS of the worker (main and pool processes), RSS
per call in flight, and the CPU seconds the worker spent per image (ours, not the stand-in's).

    python bench/pools.py [--calls 100] [--hold 20]
    python bench/pools.py --calls 8 --hold 1          # the small version
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import MiB, PeakMemory, process_tree
from devstack.local_stack import LocalStack
from devstack.samples import scene
from geoqueue import GeoQueue
from geoqueue.s3ref import S3Ref


def cpu_seconds(processes) -> float:
    total = 0.0
    for process in processes():
        times = process.cpu_times()
        total += times.user + times.system
    return total


def run(stack: LocalStack, queue: GeoQueue, pool: str, concurrency: int, images: int, hold: float) -> dict:
    store = stack.object_store()
    prefix = f"bench-pools/{pool}-{concurrency}/"
    for i in range(images):
        store.write(S3Ref("geoqueue", f"{prefix}{i:03d}.jpg"), scene(i, 160, 120), "image/jpeg")
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/config/immersity", json={"processing_delay_s": hold})
    name = f"transfer-{pool}-{concurrency}"
    worker = stack.start_worker("transfer", name=name, concurrency=concurrency, pool=pool)
    stack.wait_for_workers([name])
    processes = process_tree(worker.popen.pid)
    cpu_before = cpu_seconds(processes)
    with PeakMemory(processes) as memory:
        started = time.perf_counter()
        job = queue.wait(queue.submit("immersity.batch", {"prefix": f"s3://geoqueue/{prefix}",
                                                          "max_parallel": min(images, 100)}), timeout=3600)
        elapsed = time.perf_counter() - started
    cpu = cpu_seconds(processes) - cpu_before
    assert job.result["succeeded"] == images, job.error
    in_flight = stack.sandbox("GET", "/_sandbox/status/immersity")["peak_in_flight"]
    worker.terminate()
    return {"pool": pool, "concurrency": concurrency, "in_flight": in_flight, "seconds": elapsed,
            "rss": memory.peak_total / MiB, "cpu_per_image": cpu / images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="calls in flight wanted (threads and gevent)")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the vendor holds each call")
    args = parser.parse_args()
    variants = [("prefork", 4, 8), ("prefork", 8, 16), ("threads", args.calls, args.calls)]
    if importlib.util.find_spec("gevent"):
        variants.append(("gevent", args.calls, args.calls))
    else:
        print("(gevent is not installed: pip install gevent to measure it too)")
    stack = LocalStack(flower=False, beat=False, worker_queues=("control",),
                       settings_env={"GEOQUEUE_IMMERSITY_TIMEOUT": str(max(60.0, args.hold * 3))}).start()
    try:
        queue = GeoQueue(stack.redis_url)
        print(f"Immersity calls held {args.hold:g} s each by the stand-in")
        print(f"  {'pool':<8} {'-c':>4} {'in flight':>9} {'seconds':>8} {'peak RSS':>9} {'RSS/call':>9} "
              f"{'CPU s/image':>11}")
        for pool, concurrency, images in variants:
            r = run(stack, queue, pool, concurrency, images, args.hold)
            print(f"  {r['pool']:<8} {r['concurrency']:>4} {r['in_flight']:>9} {r['seconds']:>8.1f} "
                  f"{r['rss']:>6.0f} MiB {r['rss'] / max(r['in_flight'], 1):>5.1f} MiB {r['cpu_per_image']:>11.3f}",
                  flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
