"""Immersal jobs: build a map from images in S3, stitch maps, restore a map, localize, Visual GPS, map lists.

    immersal.build_map   {"images": "s3://b/site/", "name": "Site1", "manifest"?: "s3://b/site/manifest.csv",
                          "bank"?: 0, "window_size"?: 0, "options"?: {construct options}, "extend"?: [map ids],
                          "output"?: "s3://b/maps/site.bytes", "chunk_size"?: 8, "max_parallel"?: 4}
    immersal.stitch      {"name": "Both", "map_ids": [1001, 1002], "output"?}
    immersal.restore     {"map_id": 1001, "bank"?: 0, "clear"?: true}
    immersal.localize    {"image": "s3://b/q.jpg", "intrinsics": {"fx", "fy", "ox", "oy"} or [fx, fy, ox, oy],
                          "map_ids": [up to 8 ids]}
    immersal.visual_gps  as localize; adds latitude, longitude, altitude (WGS84)
    immersal.maps_near   {"latitude", "longitude", "radius" (metres), "bank"?}
    immersal.list_maps   {"bank"?}

A map build, one task per arrow; the workspace (an image bank of the account) is held by one job at a time:

    build_map              check every input, split the manifest into chunks, queue for the workspace
    -> start               lease granted: clear, restore `extend` maps, check imageMax, fan out the chunks
    -> transfer.submit_chunk  x chunks, `max_parallel` at a time; every image recorded once Immersal took it
    -> transfer.settle     resolve cut-off submissions, construct, release the workspace
    -> poll                beat, every 5 s: construction status of every job waiting on Immersal
    -> transfer.download   /mapb64 (checked against sha256_al) written to S3

Exactly once per (run, index): an image is marked "calling" (with a Redis sequence number) just
before its capture call and "sent" as soon as Immersal answers. A redelivered chunk skips what was
sent and never repeats a call that was cut off (worker killed, timeout). Immersal cannot list a
workspace, but /status counts it: with every other image confirmed, settle learns how many cut-off
calls arrived. All: nothing is sent again. None: each is sent once. Some: a call that never left
its worker was cut off right after its mark, later than the calls that had reached Immersal, so
the newest are sent and a second count confirms the guess; only if it does not are the rest sent
too (Immersal replaces an image sent twice with the same run and index; the result says so).
"""
from __future__ import annotations

from typing import Any

from geoqueue import jobs
from tasks.immersal.client import client
from tasks.immersal.construction import create_once, record_map
from tasks.immersal.inputs import (
    check_images,
    check_map_ids,
    check_map_name,
    check_maps_exist,
    check_options,
    check_room,
    check_whole,
    read_manifest,
)
from tasks.immersal.records import (
    CONSTRUCTION,
    DEFAULT_CHUNK_SIZE,
    MANIFEST_NAME,
    MAX_CHUNK_SIZE,
    MAX_PARALLEL,
    MIN_STITCH_MAPS,
    QUEUED,
    STEP_PHASES,
    job_state,
)
from tasks.immersal.submission import extend_ids, save_chunks
from tasks.immersal.workspace import queue_for_workspace, waiting_phase
from workers import app
from workers.jobtask import PENDING, InvalidInput, JobContext, job_task
from workers.storage import get_store, object_ref, prefix_ref


def resumed(job: JobContext) -> bool:
    """A job entry task that runs again (redelivered) after the job went on: show the job where it is."""
    state = job_state(job.id)
    step = state.get("step")
    if not step:
        return False
    if step == QUEUED:
        job.ledger.transition(job.id, jobs.QUEUED, phase=waiting_phase(int(state["bank"])))
    elif step == CONSTRUCTION:
        job.ledger.transition(job.id, jobs.WAITING, phase=f"construction: {state.get('status', 'pending')}")
    else:
        job.ledger.transition(job.id, jobs.RUNNING, phase=STEP_PHASES[step])
    return True


# --- immersal.build_map ---
@job_task(app, "immersal.build_map")
def build_map(job: JobContext, images: str, name: str, manifest: str | None = None, bank: int = 0,
              window_size: int = 0, options: dict | None = None, extend: list[int] | None = None,
              output: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE, max_parallel: int | None = None) -> Any:
    """A map from the images under an S3 prefix and their manifest."""
    if resumed(job):
        return PENDING
    check_map_name(name)
    check_whole(bank, "bank")
    check_whole(window_size, "window_size")
    check_options(options)
    extended = extend_ids(extend)
    check_whole(chunk_size, "chunk_size", 1, MAX_CHUNK_SIZE)
    if max_parallel is not None:
        check_whole(max_parallel, "max_parallel", 1, MAX_PARALLEL)
    if output is not None:
        object_ref(output, "output")
    prefix = prefix_ref(images, "images")
    manifest_ref = object_ref(manifest, "manifest") if manifest else prefix.child(MANIFEST_NAME)
    job.progress("checking manifest and images")
    store = get_store()
    rows = read_manifest(store, manifest_ref)
    check_images(store, prefix, manifest_ref, rows)
    vendor = client()
    check_room(vendor, bank, len(rows))
    check_maps_exist(vendor, extended, "extend")
    save_chunks(job.id, rows, chunk_size)
    queue_for_workspace(job.id, bank)
    return PENDING


# --- immersal.stitch and immersal.restore ---
@job_task(app, "immersal.stitch")
def stitch(job: JobContext, name: str, map_ids: list[int], output: str | None = None) -> Any:
    """Fuse finished maps into a new one, tracked and downloaded like a built map."""
    if resumed(job):
        return PENDING
    check_map_name(name)
    ids = check_map_ids(map_ids, "map_ids", low=MIN_STITCH_MAPS)
    if output is not None:
        object_ref(output, "output")
    vendor = client()
    check_maps_exist(vendor, ids, "map_ids", need_done=True)
    job.progress("stitching")
    map_id = create_once(vendor, job.id, name, None, lambda: vendor.fuse(name, ids))
    record_map(job.id, map_id, {"map_ids": ids})
    return PENDING


@job_task(app, "immersal.restore")
def restore(job: JobContext, map_id: int, bank: int = 0, clear: bool = True) -> Any:
    """Put a map's images back into its workspace (emptied first when `clear`), to extend the map."""
    if resumed(job):
        return PENDING
    check_map_ids(map_id, "map_id", high=1)
    check_whole(bank, "bank")
    if not isinstance(clear, bool):
        raise InvalidInput(f"clear: must be true or false, got {clear!r}", field="clear")
    check_maps_exist(client(), [map_id], "map_id")
    queue_for_workspace(job.id, bank)
    return PENDING
