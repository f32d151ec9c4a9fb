"""Mapillary harvest: geoqueue's `mapillary.harvest` job vs the toolset's four sequential steps,
against the same sandbox (every Mapillary request delayed by the added latency) in the same run.

The baseline does what the toolset's scripts do (docs/vendors/mapillary.md#the-toolsets-four-steps):
tiles from z13 drilled into all four children of every tile naming the organization, one image_ids
call per sequence, metadata in batches of 50 over the whole id list (one id at a time for a batch
that fails), then one download per image into a local folder, skipping files already there; one
request at a time. geoqueue runs its job on the embedded stack with the fleet's settings and writes
to S3 (moto), which costs it more per image than the baseline's local files.

Two harvests, each at every latency given, rounds alternating geoqueue and the toolset:
- `org`: the largest organization over the whole region (8,969 images in 120 sequences);
- `sequence`: an organization with one sequence of 1,000 images (the stand-in's `long_sequence_images`),
  so that only the calls inside one sequence can overlap.

Reported: wall time and the ratio toolset/geoqueue; the requests each made (the goal: geoqueue within
the toolset's count plus 1%); the CPU seconds per image of geoqueue's own processes (its worker
process trees and redis-server; the stand-ins and moto share the machine but are not ours) and of
the toolset's process.

    python bench/mapillary_harvest.py --latency-ms 20,100 [--what org,sequence] [--rounds 1]
    python bench/mapillary_harvest.py --latency-ms 20 --what sequence --sequence-images 200   # small version
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.memory import process_tree  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.s3ref import parse_ref  # noqa: E402
from sandbox.mapillary_world import LONG_SEQUENCE_PLAN, build_world  # noqa: E402
from vendors.mapillary.client import MapillaryClient  # noqa: E402
from vendors.mapillary.errors import MapillaryNotFound  # noqa: E402
from vendors.mapillary.graph import MAX_IDS_PER_BATCH  # noqa: E402
from vendors.mapillary.tiles import child_tiles, tiles_covering_bbox  # noqa: E402

TOOLSET_MIN_ZOOM, TOOLSET_MAX_ZOOM = 13, 14        # the toolset's settings.py
TOOLSET_FIELDS = ("sequence", "captured_at", "compass_angle", "thumb_256_url", "width")
THUMBNAIL_LIFETIME_S = 3600


# --- the baseline: the toolset's steps, one request at a time ---
def toolset_sequences(vendor: MapillaryClient, organization_id: str, bbox) -> list[str]:
    """get_sequences.py: recurse into the four children of any tile that names the organization."""
    found: set[str] = set()
    pending = tiles_covering_bbox(bbox, TOOLSET_MIN_ZOOM)
    while pending:
        tile = vendor.coverage_tile(*pending.pop())
        if not tile.has_organization(organization_id):
            continue
        if tile.z < TOOLSET_MAX_ZOOM:
            pending.extend(child_tiles(tile.z, tile.x, tile.y))
        else:
            found.update(i.sequence_id for i in tile.images if i.organization_id == organization_id)
    return sorted(found)


def toolset_metadata(vendor: MapillaryClient, image_ids: list[str]) -> dict[str, dict]:
    """get_images_metadata.py: batches of 50; the ids of a failed batch are retried one by one."""
    metadata, failed = {}, []
    for start in range(0, len(image_ids), MAX_IDS_PER_BATCH):
        batch = image_ids[start:start + MAX_IDS_PER_BATCH]
        try:
            metadata.update(vendor.get_images(batch, TOOLSET_FIELDS))
        except MapillaryNotFound:
            failed += batch
    for image_id in failed:
        try:
            metadata[image_id] = vendor.get_image(image_id, TOOLSET_FIELDS)
        except MapillaryNotFound:
            pass                                      # "does not exist anymore"
    return metadata


def run_toolset(vendor: MapillaryClient, organization_id: str, bbox, outputs: Path) -> set[str]:
    sequences = toolset_sequences(vendor, organization_id, bbox)
    pairs = [(s, i) for s in sequences for i in vendor.image_ids_of_sequence(s)]
    metadata = toolset_metadata(vendor, [i for _, i in pairs])
    images = outputs / "downloaded_images"
    images.mkdir(parents=True, exist_ok=True)
    with open(outputs / "img_meta_dataset.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["seq_id", "img_id", "captured_at", "compass_angle", "thumb_256_url", "width"])
        for sequence_id, image_id in pairs:
            meta = metadata.get(image_id)
            if meta:
                writer.writerow([sequence_id, image_id, meta.get("captured_at"), meta.get("compass_angle"),
                                 meta.get("thumb_256_url"), meta.get("width")])
    for image_id, meta in metadata.items():                      # download_images.py
        target = images / f"{image_id}_256.jpg"
        if not target.exists():
            vendor.download(meta["thumb_256_url"], target)
    return {i for _, i in pairs}


# --- measuring ---
def requests_made(stack: LocalStack) -> dict[str, int]:
    counts = stack.sandbox("GET", "/_sandbox/counters")["mapillary"]
    kinds = {"tiles": "tile", "image_ids": "image_ids", "metadata batches": "graph_batch",
             "single images": "graph_image", "thumbnails": "thumbnail"}
    made = {label: counts.get(name, 0) for label, name in kinds.items()}
    made["all"] = len(stack.sandbox("GET", "/_sandbox/journal/mapillary"))
    return made


def fresh_sandbox(stack: LocalStack, latency_ms: float, sequence_images: int) -> None:
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/faults/mapillary", json={"latency_ms": latency_ms})
    # The toolset downloads minutes after it fetched the URLs: with a lifetime of 60 s they would
    # have expired (as they do for real after a while), and the baseline fail.
    stack.sandbox("POST", "/_sandbox/config/mapillary", json={"thumbnail_lifetime_s": THUMBNAIL_LIFETIME_S,
                                                             "long_sequence_images": sequence_images})


def ours(stack: LocalStack):
    """geoqueue's own processes: the worker process trees and redis-server."""
    return [process_tree(stack.processes[name].popen.pid) for name in ("control", "transfer", "redis")]


def time_geoqueue(stack: LocalStack, organization_id: str, bbox) -> tuple[float, float, set[str]]:
    queue = GeoQueue(stack.redis_url)
    destination = f"s3://geoqueue/bench-{time.time_ns()}/"
    with CpuMeter(*ours(stack)) as cpu:
        started = time.perf_counter()
        job = queue.wait(queue.submit("mapillary.harvest", {"organization_id": organization_id, "bbox": list(bbox),
                                                           "destination": destination}), timeout=7200, poll=0.2)
        elapsed = time.perf_counter() - started
    rows = stack.object_store().read(parse_ref(job.result["outputs"]["img_dataset.csv"])).decode()
    return elapsed, cpu.seconds, {line.split(",")[1] for line in rows.splitlines()[1:]}


def time_toolset(stack: LocalStack, organization_id: str, bbox) -> tuple[float, float, set[str]]:
    base = f"{stack.sandbox_url}/mapillary"
    vendor = MapillaryClient(f"{base}/graph", f"{base}/tiles", f"{base}/rupload", stack.env["GEOQUEUE_MAPILLARY_TOKEN"])
    with tempfile.TemporaryDirectory(prefix="bench-toolset-") as outputs:
        cpu = time.process_time()
        started = time.perf_counter()
        image_ids = run_toolset(vendor, organization_id, bbox, Path(outputs))
        return time.perf_counter() - started, time.process_time() - cpu, image_ids


def measure(stack: LocalStack, what: str, latency_ms: float, rounds: int, sequence_images: int) -> dict:
    world = build_world(long_sequence=sequence_images)
    organization = (world.largest_organization() if what == "org"
                    else world.organization_by_slug(LONG_SEQUENCE_PLAN[0]))
    w, s, e, n = world.bbox
    bbox = (w - 0.002, s - 0.002, e + 0.002, n + 0.002)
    runs = {"geoqueue": [], "toolset": []}
    for _ in range(rounds):
        for name, timed in (("geoqueue", time_geoqueue), ("toolset", time_toolset)):
            fresh_sandbox(stack, latency_ms, sequence_images)
            elapsed, cpu, images = timed(stack, organization.id, bbox)
            runs[name].append({"seconds": elapsed, "cpu": cpu, "images": images, "requests": requests_made(stack)})
        assert runs["geoqueue"][-1]["images"] == runs["toolset"][-1]["images"], "the two harvests differ"
    return {"what": what, "latency_ms": latency_ms, "organization": organization.slug, "runs": runs}


def report(result: dict) -> None:
    runs = result["runs"]
    best = {name: min(r["seconds"] for r in rounds) for name, rounds in runs.items()}
    images = len(runs["geoqueue"][0]["images"])
    print(f"{result['what']}: {result['organization']}, {images} images, latency {result['latency_ms']:g} ms")
    for name, rounds in runs.items():
        made, seconds = rounds[0]["requests"], ", ".join(f"{r['seconds']:.1f}" for r in rounds)
        kinds = ", ".join(f"{k} {v}" for k, v in made.items() if k != "all")
        cpu = min(r["cpu"] for r in rounds) / images * 1000
        print(f"  {name:<9} {best[name]:7.1f} s (rounds {seconds})  CPU {cpu:.2f} ms/image  "
              f"requests {made['all']} ({kinds})")
    ours_made, theirs = runs["geoqueue"][0]["requests"]["all"], runs["toolset"][0]["requests"]["all"]
    print(f"  ratio toolset/geoqueue: {best['toolset'] / best['geoqueue']:.1f}x; "
          f"requests geoqueue/toolset: {ours_made / theirs:.4f} (goal <= 1.01)", flush=True)


def table(results: list[dict]) -> None:
    print("| latency | harvest | images | geoqueue | toolset | toolset/geoqueue | requests geoqueue / toolset "
          "| CPU ms/image geoqueue (workers, Redis) / toolset |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        runs = result["runs"]
        best = {name: min(r["seconds"] for r in rounds) for name, rounds in runs.items()}
        images = len(runs["geoqueue"][0]["images"])
        made = {name: rounds[0]["requests"]["all"] for name, rounds in runs.items()}
        cpu = {name: min(r["cpu"] for r in rounds) / images * 1000 for name, rounds in runs.items()}
        print(f"| {result['latency_ms']:g} ms | {result['what']} | {images} | {best['geoqueue']:.1f} s | "
              f"{best['toolset']:.1f} s | {best['toolset'] / best['geoqueue']:.1f}x | {made['geoqueue']} / "
              f"{made['toolset']} ({made['geoqueue'] / made['toolset']:.4f}) | {cpu['geoqueue']:.2f} / "
              f"{cpu['toolset']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", default="20,100", help="comma-separated added latencies")
    parser.add_argument("--what", default="org,sequence", help="org, sequence or both")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sequence-images", type=int, default=1000, help="images of the one long sequence")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a GEOQUEUE_ setting for the stack, e.g. MAPILLARY_CALLS_PER_SEQUENCE=32 "
                             "(default: the fleet's)")
    args = parser.parse_args()

    settings = {f"GEOQUEUE_{k.upper()}": v for k, v in (item.split("=", 1) for item in args.setting)}
    stack = LocalStack(settings_env=settings, isolated=True, flower=False, beat=False).start()
    try:
        print(f"{os.cpu_count()} CPUs; settings: {settings or 'the fleet defaults'}", flush=True)
        results = []
        for latency in (float(v) for v in args.latency_ms.split(",")):
            for what in args.what.split(","):
                results.append(measure(stack, what, latency, args.rounds, args.sequence_images))
                report(results[-1])
        table(results)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
