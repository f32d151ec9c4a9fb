"""Mapillary jobs: harvest an organization's (or a creator's) imagery in a bounding box; upload images as sequences.

    mapillary.harvest          {"organization_id" | "creator_id": "…", "bbox": [min_lon, min_lat, max_lon, max_lat],
                                "destination": "s3://b/harvest/", "fields"?: [...], "quality"?: "256",
                                "max_parallel"?: 8, "captured_since"?: "2025-06-01T00:00:00Z"}
    mapillary.upload_sequence  {"images": "s3://b/photos/", "organization_id"?: "…", "max_parallel"?: 8}

A harvest: the toolset's four steps (docs/vendors/mapillary.md#the-toolsets-four-steps) as one job, a task per arrow:

    harvest               coverage tiles over the bbox, drilled down to z14 only into tiles that hold the
                          owner; the owner's sequences with images in the bbox, `max_parallel` at a time:
    -> transfer.sequence  the sequence's image ids, their metadata in batches of 50, and each batch's
                          downloads with the thumbnail URLs that batch just returned, up to
                          GEOQUEUE_MAPILLARY_CALLS_PER_SEQUENCE calls in flight (tasks/mapillary/calls.py);
                          the task that records the last sequence writes the three CSV datasets

With `captured_since` a harvest is incremental: only the sequences with an image captured since
(z14's image points carry their capture time), only those of their images captured since (the
metadata's captured_at), images already at the destination skipped by id, and the CSVs appended
to, each row once; its result's `watermark` is the next run's `captured_since`, less a lookback
for late uploads (tasks/mapillary/window.py).

Everything done is checkpointed in Redis per tile, sequence, batch and image (`HarvestCheckpoints`),
so a task that runs again after a crash or a retry starts where the last one stopped. Graph and
tile calls take their slot from fleet-wide limits per token (services/rate_limit.py).

An upload checks every image's EXIF, splits the good ones into sequences (tasks/mapillary/sequences.py)
and uploads each image once, with the protocol GEOQUEUE_MAPILLARY_UPLOAD_PROTOCOL names:

    upload_sequence          EXIF of every image (the reasons for the rejected ones), the plan of sequences
    -> transfer.upload_image one image, `max_parallel` at a time: an offset-resumable session keyed by the
                             image's md5, or the legacy form POST to {username}/{sequence uuid}/{file name};
                             the task that records the last image closes every sequence (an image manifest
                             and finish_upload, or the legacy DONE object), each once

Parameters are checked by the job catalog (geoqueue.catalog.mapillary); the runtime's guard
classifies every failure (runtime/guard.py).
"""
from __future__ import annotations

from typing import Any

from config.redis_client import get_redis
from config.settings import get_settings
from runtime import PENDING, JobContext, task
from runtime.fanout import Fanout
from services.storage import get_store, prefix_ref
from tasks.mapillary.account import client
from tasks.mapillary.datasets import check_appendable, write_datasets
from tasks.mapillary.harvest import (
    finish_harvest,
    harvest_one_sequence,
    harvest_phase,
    harvest_result,
    note_existing_images,
    show_progress,
)
from tasks.mapillary.inputs import HarvestPlan
from tasks.mapillary.records import HarvestCheckpoints
from tasks.mapillary.tiles import discover_sequences
from tasks.mapillary.upload import finish_upload, plan_upload, upload_one_image
from tasks.mapillary.window import window_summary

SEQUENCE_TASK = "mapillary.transfer.sequence"
UPLOAD_TASK = "mapillary.transfer.upload_image"


def parallel(max_parallel: int | None) -> int:
    return max_parallel or get_settings().mapillary_max_parallel


@task("mapillary.harvest", kind="job")
def harvest(job: JobContext, bbox: list[float], destination: str, organization_id: str | int | None = None,
            creator_id: str | int | None = None, fields: list[str] | None = None, quality: str | int | None = None,
            max_parallel: int | None = None, captured_since: str | None = None) -> Any:
    """The owner's sequences with images in the bbox: image ids, metadata, thumbnails and the toolset's CSVs."""
    plan = HarvestPlan.from_params(job.params)
    client()    # refuses a fleet without a token before any image is read
    checkpoints = HarvestCheckpoints(get_redis(), job.id)
    if plan.incremental:
        check_appendable(get_store(), plan)
    note_existing_images(get_store(), plan, checkpoints)
    sequences = discover_sequences(job, plan, checkpoints)
    if not sequences:
        return harvest_result(plan, {}, checkpoints.counts(), write_datasets(get_store(), plan, [], {}, {}),
                              window_summary(plan, {}, job.record.created))
    job.progress(harvest_phase(checkpoints.counts()), total=len(sequences))
    Fanout().start(job.id, sequences, SEQUENCE_TASK, parallel(max_parallel))
    return PENDING


harvest_sequence = task(SEQUENCE_TASK, kind="item", finish=finish_harvest, progress=show_progress)(harvest_one_sequence)


@task("mapillary.upload_sequence", kind="job")
def upload_sequence(job: JobContext, images: str, organization_id: str | int | None = None,
                    max_parallel: int | None = None) -> Any:
    """Images under a prefix with valid EXIF, split into sequences and uploaded, each image once."""
    client()    # refuses a fleet without a token before any image is read
    plan = plan_upload(job, prefix_ref(images, "images"))
    keys = [key for sequence in plan["sequences"] for key, _ in sequence["images"]]
    job.progress(f"uploading {len(keys)} images in {len(plan['sequences'])} sequences "
                 f"({len(plan['rejected'])} rejected, {len(plan['duplicates'])} duplicates dropped)", total=len(keys))
    Fanout().start(job.id, keys, UPLOAD_TASK, parallel(max_parallel))
    return PENDING


upload_image = task(UPLOAD_TASK, kind="item", finish=finish_upload)(upload_one_image)
