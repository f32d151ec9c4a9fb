"""Immersal jobs: build a map from images in S3, stitch maps, restore a map, localize, Visual GPS, map lists.

    immersal.build_map   {"images": "s3://b/site/", "name": "Site1", "manifest"?, "bank"?, "window_size"?,
                          "options"?, "extend"?, "output"?, "chunk_size"?, "max_parallel"?,
                          "exact_captures"?}
    immersal.stitch      {"name": "Both", "map_ids": [1001, 1002], "output"?}
    immersal.restore     {"map_id": 1001, "bank"?, "clear"?}
    immersal.localize    {"image": "s3://b/q.jpg", "intrinsics": {"fx", "fy", "ox", "oy"}, "map_ids": [...]}
    immersal.visual_gps  as localize; adds latitude, longitude, altitude (WGS84)
    immersal.maps_near   {"latitude", "longitude", "radius" (metres), "bank"?}
    immersal.list_maps   {"bank"?}

A map build, one task per arrow; the workspace (an image bank of the account) is held by one job at a time:

    build_map              check every input, split the manifest into chunks, queue for the workspace
    -> start               lease granted: clear, restore `extend` maps, check imageMax, fan out the chunks
    -> transfer.submit_chunk  x chunks, `max_parallel` at a time; every image captured once (submission.py)
    -> transfer.settle     resolve cut-off submissions, construct once, release the workspace
    -> poll                beat, every 5 s: construction status of every job waiting on Immersal
    -> transfer.download   /mapb64 (checked against sha256_al) written to S3
"""
from __future__ import annotations

from typing import Any

from geoqueue import job_record
from runtime import PENDING, JobContext, task
from services.storage import get_store, object_ref, prefix_ref
from tasks.immersal import construction, submission
from tasks.immersal import localize as locating
from tasks.immersal.account import client
from tasks.immersal.inputs import check_images, check_maps_exist, check_room, read_manifest
from tasks.immersal.records import (
    CHUNK_TASK,
    CONSTRUCTION,
    DEFAULT_CHUNK_SIZE,
    DOWNLOAD,
    MANIFEST_NAME,
    POLL_LOCK_SECONDS,
    QUEUED,
    SETTLE,
    START,
    STEP_PHASES,
    STEPS,
    ImmersalRecords,
)
from tasks.immersal.workspace import queue_for_workspace, waiting_phase


def resumed(job: JobContext) -> bool:
    """A job's own task that runs again (redelivered) after the job went on: show the job where it is."""
    state = STEPS.state(job.id)
    step = state.get("step")
    if not step:
        return False
    if step == QUEUED:
        job.show(job_record.QUEUED, waiting_phase(int(state["bank"])))
    elif step == CONSTRUCTION:
        job.show(job_record.WAITING, f"construction: {state.get('status', 'pending')}")
    else:
        job.show(job_record.RUNNING, STEP_PHASES.get(step, step))
    return True


@task("immersal.build_map", kind="job")
def build_map(job: JobContext, images: str, name: str, manifest: str | None = None, bank: int | None = None,
              window_size: int | None = None, options: dict | None = None, extend: list[int] | None = None,
              output: str | None = None, chunk_size: int | None = None, max_parallel: int | None = None,
              exact_captures: bool | None = None) -> Any:
    """A map from the images under an S3 prefix and their manifest."""
    if resumed(job):
        return PENDING
    bank = bank or 0
    store = get_store()
    if output is not None:
        store.output(output, "output")
    prefix = prefix_ref(images, "images")
    manifest_ref = object_ref(manifest, "manifest") if manifest else prefix.child(MANIFEST_NAME)
    job.progress("checking manifest and images")
    rows = read_manifest(store, manifest_ref, "manifest" if manifest else "images")
    check_images(store, prefix, manifest_ref, rows)
    vendor = client()
    check_room(vendor, bank, len(rows))
    check_maps_exist(vendor, extend or [], "extend")
    ImmersalRecords(job.id).save_chunks(rows, chunk_size or DEFAULT_CHUNK_SIZE)
    queue_for_workspace(job, bank)
    return PENDING


@task("immersal.stitch", kind="job")
def stitch(job: JobContext, name: str, map_ids: list[int], output: str | None = None) -> Any:
    """Fuse finished maps into a new one, tracked and downloaded like a built map."""
    if resumed(job):
        return PENDING
    if output is not None:
        get_store().output(output, "output")
    vendor = client()
    check_maps_exist(vendor, map_ids, "map_ids", need_done=True)
    job.progress("stitching")
    map_id = construction.create_map_once(job, vendor, None, lambda: vendor.fuse(name, map_ids))
    construction.record_map(job, map_id, {"map_ids": map_ids})
    return PENDING


@task("immersal.restore", kind="job")
def restore(job: JobContext, map_id: int, bank: int | None = None, clear: bool | None = None) -> Any:
    """Put a map's images back into its workspace (emptied first unless `clear` is false), to extend the map."""
    if resumed(job):
        return PENDING
    check_maps_exist(client(), [map_id], "map_id")
    queue_for_workspace(job, bank or 0)
    return PENDING


@task("immersal.localize", kind="job")
def localize(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    """The camera pose of one image in one of up to 8 maps, or localized: false."""
    return locating.localize_image(job, image, intrinsics, map_ids)


@task("immersal.visual_gps", kind="job")
def visual_gps(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    """Localize, then place the camera on the WGS84 ellipsoid through the map's ECEF transform."""
    pose = locating.localize_image(job, image, intrinsics, map_ids)
    return locating.place_on_earth(job, pose) if pose["localized"] else pose


@task("immersal.maps_near", kind="job")
def maps_near(job: JobContext, latitude: float, longitude: float, radius: float, bank: int | None = None) -> dict:
    """The maps within `radius` metres of a WGS84 point (/geolist)."""
    return locating.maps_near(latitude, longitude, radius, bank or 0)


@task("immersal.list_maps", kind="job")
def list_maps(job: JobContext, bank: int | None = None) -> dict:
    """All the account's maps (/list), newest first."""
    return locating.list_maps(bank or 0)


# --- the tasks that carry a build on ---
start = task(kind="step", machine=STEPS, step=START)(submission.start)
submit_chunk = task(CHUNK_TASK, kind="item", finish=submission.chunks_done, progress=submission.show_submission,
                    fails_job=lambda _chunk, error: error)(submission.submit_chunk)
settle = task(kind="step", machine=STEPS, step=SETTLE)(submission.settle)
download = task(kind="step", machine=STEPS, step=DOWNLOAD)(construction.download)


@task("immersal.poll", kind="periodic", one_at_a_time=POLL_LOCK_SECONDS, ignore_result=True)
def poll() -> dict:
    """Beat, every few seconds: every Immersal job in progress looked after. Never sleeps."""
    return construction.poll_cycle()
