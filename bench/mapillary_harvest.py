"""Mapillary harvest: geoqueue's `mapillary.harvest` job vs the toolset's four sequential steps,
against the same sandbox (every Mapillary request delayed by --latency-ms) in the same run.

The baseline does what the toolset's scripts do (shared/vendor-docs/mapillary-api-v4-toolset-readme.md):
tiles from z13 drilled into all four children of every tile naming the organization, one image_ids
call per sequence, metadata in batches of 50 over the whole id list (one id at a time for a batch
that fails), then one download per image into a local folder, skipping files already there; one
request at a time. geoqueue runs its job on the embedded stack and writes to S3 (moto), which costs
it more per image than the baseline's local files.

    python bench/mapillary_harvest.py [--latency-ms 20] [--rounds 1] [--concurrency 4] [--max-parallel 8]
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.local_stack import LocalStack  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.s3ref import parse_ref  # noqa: E402
from sandbox.mapillary_world import build_world  # noqa: E402
from vendors.mapillary import (  # noqa: E402
    MAX_IDS_PER_BATCH,
    MapillaryClient,
    MapillaryNotFound,
    child_tiles,
    tiles_covering_bbox,
)

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


def fresh_sandbox(stack: LocalStack, latency_ms: float) -> None:
    stack.sandbox("POST", "/_sandbox/reset")
    stack.sandbox("POST", "/_sandbox/faults/mapillary", json={"latency_ms": latency_ms})
    # The toolset downloads minutes after it fetched the URLs: with the stand-in's default lifetime
    # of 60 s they would have expired (as they do for real after a while), and the baseline fail.
    stack.sandbox("POST", "/_sandbox/config/mapillary", json={"thumbnail_lifetime_s": THUMBNAIL_LIFETIME_S})


def time_geoqueue(stack: LocalStack, organization_id: str, bbox, max_parallel: int) -> tuple[float, set[str]]:
    queue = GeoQueue(stack.redis_url)
    destination = f"s3://geoqueue/bench-{time.time_ns()}/"
    started = time.perf_counter()
    job = queue.wait(queue.submit("mapillary.harvest", {"organization_id": organization_id, "bbox": list(bbox),
                                                       "destination": destination, "max_parallel": max_parallel}),
                     timeout=3600, poll=0.2)
    elapsed = time.perf_counter() - started
    rows = stack.object_store().read(parse_ref(job.result["outputs"]["img_dataset.csv"])).decode()
    return elapsed, {line.split(",")[1] for line in rows.splitlines()[1:]}


def time_toolset(stack: LocalStack, organization_id: str, bbox) -> tuple[float, set[str]]:
    base = f"{stack.sandbox_url}/mapillary"
    vendor = MapillaryClient(f"{base}/graph", f"{base}/tiles", f"{base}/rupload", stack.env["GEOQUEUE_MAPILLARY_TOKEN"])
    with tempfile.TemporaryDirectory(prefix="bench-toolset-") as outputs:
        started = time.perf_counter()
        image_ids = run_toolset(vendor, organization_id, bbox, Path(outputs))
        return time.perf_counter() - started, image_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4, help="processes of the transfer worker")
    parser.add_argument("--max-parallel", type=int, default=8, help="sequences of the harvest in flight")
    parser.add_argument("--organization", default=None, help="organization slug (default: the largest)")
    args = parser.parse_args()

    world = build_world()
    organization = world.organization_by_slug(args.organization) if args.organization else world.largest_organization()
    w, s, e, n = world.bbox
    bbox = (w - 0.002, s - 0.002, e + 0.002, n + 0.002)
    stack = LocalStack(settings_env={"GEOQUEUE_TRANSFER_CONCURRENCY": str(args.concurrency)},
                       isolated=True, flower=False, beat=False).start()
    try:
        results = {"geoqueue": [], "toolset": []}
        for _ in range(args.rounds):
            fresh_sandbox(stack, args.latency_ms)
            elapsed, harvested = time_geoqueue(stack, organization.id, bbox, args.max_parallel)
            results["geoqueue"].append((elapsed, requests_made(stack), len(harvested)))
            fresh_sandbox(stack, args.latency_ms)
            elapsed, baseline = time_toolset(stack, organization.id, bbox)
            results["toolset"].append((elapsed, requests_made(stack), len(baseline)))
            assert harvested == baseline, "the two harvests differ"
        print(f"organization {organization.slug}, bbox {', '.join(f'{v:.5f}' for v in bbox)}, "
              f"latency {args.latency_ms:g} ms, transfer concurrency {args.concurrency}, "
              f"max_parallel {args.max_parallel}, rounds {args.rounds}")
        best = {name: min(r[0] for r in runs) for name, runs in results.items()}
        for name, runs in results.items():
            elapsed, made, images = min(runs, key=lambda r: r[0])
            print(f"  {name:<9} {elapsed:7.1f} s  images {images}  requests {made['all']} "
                  f"({', '.join(f'{k} {v}' for k, v in made.items() if k != 'all')})"
                  f"  rounds: {', '.join(f'{r[0]:.1f}' for r in runs)}")
        print(f"  wall time ratio toolset/geoqueue: {best['toolset'] / best['geoqueue']:.2f}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
