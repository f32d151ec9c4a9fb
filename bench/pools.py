"""Which pool for the transfer queue: one I/O-bound batch (Immersity calls that block while the
vendor works) through a transfer worker with prefork or threads at several concurrencies, one
after the other on one stack; wall time and the worker's peak memory (main and pool processes).

    python bench/pools.py [--images 48] [--delay 0.5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import MiB, PeakMemory, process_tree  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from devstack.samples import scene  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.s3ref import S3Ref  # noqa: E402

VARIANTS = [("prefork", 4), ("prefork", 8), ("threads", 8), ("threads", 32)]


def run(stack: LocalStack, queue: GeoQueue, pool: str, concurrency: int, prefix: str, images: int):
    name = f"transfer-{pool}-{concurrency}"
    worker = stack.start_worker("transfer", name=name, concurrency=concurrency, pool=pool)
    stack.wait_for_workers([name])
    with PeakMemory(process_tree(worker.popen.pid)) as memory:
        started = time.perf_counter()
        job = queue.wait(queue.submit("immersity.batch", {"prefix": prefix, "max_parallel": images}), timeout=900)
        elapsed = time.perf_counter() - started
    assert job.result["succeeded"] == images
    worker.terminate()
    return elapsed, memory.peak_total / MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the vendor works on each image")
    args = parser.parse_args()
    stack = LocalStack(flower=False, beat=False, worker_queues=("control",)).start()
    try:
        queue, store = GeoQueue(stack.redis_url), stack.object_store()
        stack.sandbox("POST", "/_sandbox/config/immersity", json={"processing_delay_s": args.delay})
        print(f"{args.images} images per run, the vendor working {args.delay:g} s on each")
        for number, (pool, concurrency) in enumerate(VARIANTS):
            prefix = f"bench-pools/{number}/"
            for i in range(args.images):
                store.write(S3Ref("geoqueue", f"{prefix}{i:03d}.jpg"), scene(i, 320, 240), "image/jpeg")
            elapsed, peak = run(stack, queue, pool, concurrency, f"s3://geoqueue/{prefix}", args.images)
            print(f"  {pool:<8} -c {concurrency:<3} {elapsed:6.1f} s  {args.images / elapsed:5.1f} images/s  "
                  f"peak RSS {peak:5.0f} MiB")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
