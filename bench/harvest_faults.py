"""Mapillary harvest under vendor faults (issue 11): the same harvest twice on one stack and one
sandbox, without faults and then with a share of every Mapillary request refused (by default 20%
HTTP 500 and 5% HTTP 429 with Retry-After 1 s, seeded), at each added latency given.

The organization: the largest of the stand-in's world grown by `--scale` (the `world_scale` option:
1.13 gives 10,112 images in 136 sequences), harvested over the whole region by geoqueue's
`mapillary.harvest` with the fleet's settings, writing to S3 (moto). The harvest with faults must
succeed and harvest the same image ids as the one without. Reported: wall time of each and their
ratio, the requests the sandbox served (its journal: all, refused with 5xx, refused with 429; each
refused request is one try repeated), the thumbnails downloaded, and the CPU seconds per image of
geoqueue's own processes (worker process trees and redis-server).

    python bench/harvest_faults.py --latency-ms 20,100 [--scale 1.13] [--error-rate 0.2] [--rate-limit-rate 0.05]
    python bench/harvest_faults.py --latency-ms 20 --scale 0.02      # the small version (138 images)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.mapillary_harvest import THUMBNAIL_LIFETIME_S, ours  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.s3ref import parse_ref  # noqa: E402
from sandbox.mapillary_world import build_world  # noqa: E402

JOURNAL_MAX = 20000          # the stand-in keeps its last 20,000 requests


def fresh_sandbox(stack: LocalStack, scale: float, faults: dict) -> None:
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/config/mapillary", json={"world_scale": scale,
                                                             "thumbnail_lifetime_s": THUMBNAIL_LIFETIME_S})
    stack.sandbox("POST", "/_sandbox/faults/mapillary", json=faults)


def harvest(stack: LocalStack, organization_id: str, bbox) -> dict:
    queue = GeoQueue(stack.redis_url)
    destination = f"s3://geoqueue/bench-faults-{time.time_ns()}/"
    with CpuMeter(*ours(stack)) as cpu:
        started = time.perf_counter()
        job = queue.wait(queue.submit("mapillary.harvest", {"organization_id": organization_id, "bbox": list(bbox),
                                                           "destination": destination}), timeout=7200, poll=0.2,
                         raise_on_failure=False)
        elapsed = time.perf_counter() - started
    if job.state != "succeeded":
        print(f"job {job.id} {job.state}: {job.error}", flush=True)
    rows = stack.object_store().read(parse_ref(job.result["outputs"]["img_dataset.csv"])).decode() if job.result else ""
    journal = stack.sandbox("GET", "/_sandbox/journal/mapillary")
    statuses = Counter(entry["status"] for entry in journal)
    return {"seconds": elapsed, "cpu": cpu.seconds, "state": job.state, "result": job.result or {},
            "images": {line.split(",")[1] for line in rows.splitlines()[1:]},
            "requests": len(journal), "full": len(journal) >= JOURNAL_MAX,
            "5xx": sum(n for s, n in statuses.items() if s >= 500), "429": statuses.get(429, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", default="20,100", help="comma-separated added latencies")
    parser.add_argument("--scale", type=float, default=1.13, help="the stand-in's world_scale (1.13: 10,112 images)")
    parser.add_argument("--error-rate", type=float, default=0.20, help="share of requests answered 500")
    parser.add_argument("--rate-limit-rate", type=float, default=0.05, help="share answered 429 (Retry-After 1 s)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    world = build_world(scale=args.scale)
    organization = world.largest_organization()
    sequences = [s for s in world.sequences.values() if s.organization_id == organization.id]
    w, s, e, n = world.bbox
    bbox = (w - 0.002, s - 0.002, e + 0.002, n + 0.002)
    stack = LocalStack(isolated=True, flower=False, beat=False).start()
    try:
        print(f"{os.cpu_count()} CPUs; {organization.slug}: {sum(len(q.image_ids) for q in sequences)} images in "
              f"{len(sequences)} sequences (world_scale {args.scale:g}); faults: {args.error_rate:.0%} HTTP 500, "
              f"{args.rate_limit_rate:.0%} HTTP 429", flush=True)
        print("| latency | faults | wall time | job | images downloaded | requests | refused 5xx | refused 429 "
              "| CPU ms/image (workers, Redis) |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
        for latency in (float(v) for v in args.latency_ms.split(",")):
            runs = {}
            for label, faults in (("none", {}), (f"{args.error_rate:.0%} 5xx + {args.rate_limit_rate:.0%} 429",
                                                 {"error_rate": args.error_rate,
                                                  "rate_limit_rate": args.rate_limit_rate, "seed": args.seed})):
                fresh_sandbox(stack, args.scale, {"latency_ms": latency, **faults})
                r = runs[label] = harvest(stack, organization.id, bbox)
                images = len(r["images"])
                print(f"| {latency:g} ms | {label} | {r['seconds']:.1f} s | {r['state']} | "
                      f"{r['result'].get('images_downloaded')} of {images} | "
                      f"{r['requests']}{'+' if r['full'] else ''} | "
                      f"{r['5xx']} | {r['429']} | {1000 * r['cpu'] / max(images, 1):.1f} |", flush=True)
            clean, faulty = runs.values()
            assert faulty["state"] == clean["state"] == "succeeded", "a harvest did not succeed"
            assert faulty["images"] == clean["images"], "the harvests with and without faults differ"
            assert faulty["result"]["images_downloaded"] == len(clean["images"]), faulty["result"]
            print(f"latency {latency:g} ms: with faults {faulty['seconds'] / clean['seconds']:.2f}x the time, "
                  f"{faulty['requests'] / clean['requests']:.2f}x the requests "
                  f"({faulty['5xx'] + faulty['429']} refused, each tried again); same {len(clean['images'])} images",
                  flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
