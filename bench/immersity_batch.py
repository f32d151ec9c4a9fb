"""An Immersity batch on one host: how many calls the fleet keeps in flight, with the fleet's defaults.

N images, every call held `--hold` seconds by the stand-in (Immersity answers when the artifact is
written), through the stack's one transfer worker (its default pool and concurrency) and the
batch's default `max_parallel` (GEOQUEUE_IMMERSITY_MAX_PARALLEL), at each added latency given.
The stand-in counts the calls it is working on at once (`peak_in_flight`). Baseline in the same
run: the same batch at `--baseline-max-parallel` (the default before this change). Reported: peak
calls in flight, wall time, and the CPU seconds per image of geoqueue's own processes (worker
process trees and redis-server).

    python bench/immersity_batch.py --latency-ms 20,100 [--images 200] [--hold 2]
    python bench/immersity_batch.py --latency-ms 20 --images 20 --hold 1       # the small version
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import CpuMeter
from bench.memory import process_tree
from config.settings import Settings
from devstack.local_stack import LocalStack
from devstack.samples import scene
from geoqueue import GeoQueue
from geoqueue.s3ref import S3Ref


def put_images(stack: LocalStack, count: int) -> str:
    prefix = f"bench-immersity/{time.time_ns()}/"
    store = stack.object_store()

    def put_one(i: int) -> None:
        store.write(S3Ref("geoqueue", f"{prefix}{i:04d}.jpg"), scene(i, 160, 120), "image/jpeg")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put_one, range(count)))
    return f"s3://geoqueue/{prefix}"


def run(stack: LocalStack, prefix: str, images: int, hold: float, latency_ms: float, max_parallel: int | None) -> dict:
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/config/immersity", json={"processing_delay_s": hold})
    stack.sandbox("POST", "/_sandbox/faults/immersity", json={"latency_ms": latency_ms})
    queue = GeoQueue(stack.redis_url)
    params = {"prefix": prefix} | ({"max_parallel": max_parallel} if max_parallel else {})
    ours = [process_tree(stack.processes[name].popen.pid) for name in ("control", "transfer", "redis")]
    with CpuMeter(*ours) as cpu:
        started = time.perf_counter()
        job = queue.wait(queue.submit("immersity.batch", params), timeout=3600)
        elapsed = time.perf_counter() - started
    assert job.result["succeeded"] == images, job.error
    return {"in_flight": stack.sandbox("GET", "/_sandbox/status/immersity")["peak_in_flight"], "seconds": elapsed,
            "cpu_per_image": cpu.seconds / images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds the vendor holds each call")
    parser.add_argument("--latency-ms", default="20,100", help="comma-separated added latencies")
    parser.add_argument("--baseline-max-parallel", type=int, default=4, help="0: no baseline")
    args = parser.parse_args()

    default = Settings.model_fields["immersity_max_parallel"].default
    stack = LocalStack(isolated=True, flower=False, beat=False).start()
    try:
        prefix = put_images(stack, args.images)
        fields = Settings.model_fields
        print(f"{args.images} images, every call held {args.hold:g} s; transfer worker: "
              f"{fields['transfer_pool'].default} x {fields['transfer_concurrency'].default}")
        print("| latency | max_parallel | peak calls in flight | wall time | CPU ms/image (workers, Redis) |")
        print("|---|---|---|---|---|")
        for latency in (float(v) for v in args.latency_ms.split(",")):
            for label, max_parallel in ((f"{default} (default)", None),
                                        *(((f"{args.baseline_max_parallel} (before)", args.baseline_max_parallel),)
                                          if args.baseline_max_parallel else ())):
                r = run(stack, prefix, args.images, args.hold, latency, max_parallel)
                print(f"| {latency:g} ms | {label} | {r['in_flight']} | {r['seconds']:.1f} s | "
                      f"{1000 * r['cpu_per_image']:.1f} |", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
