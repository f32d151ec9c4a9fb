"""Mapillary jobs: harvest an organization's (or a creator's) imagery in a bounding box; upload images as sequences.

    mapillary.harvest          {"organization_id" | "creator_id": "…", "bbox": [min_lon, min_lat, max_lon, max_lat],
                                "destination": "s3://b/harvest/", "fields"?: [...], "quality"?: "256",
                                "max_parallel"?: 8}
    mapillary.upload_sequence  {"images": "s3://b/photos/", "organization_id"?: "…", "max_parallel"?: 8}

A harvest is the toolset's four steps (facts/mapillary.md §2) as one job, one task per arrow:

    harvest               coverage tiles over the bbox, drilled down to z14 only into tiles that hold the
                          owner; the owner's sequences with images in the bbox, `max_parallel` at a time:
    -> transfer.sequence  the sequence's image ids, their metadata in batches of 50, and each batch's
                          downloads with the thumbnail URLs that batch just returned; the task that
                          records the last sequence writes the three CSV datasets

Everything done is checkpointed in Redis per tile, sequence, batch and image (`HarvestCheckpoints`),
so a task that runs again after a crash or a retry starts where the last one stopped. Graph and
tile calls take their slot from fleet-wide limits per token (workers/rate_limit.py).

An upload checks every image's EXIF, splits the good ones into sequences (tasks/mapillary_sequences.py)
and uploads each image once, with the protocol GEOQUEUE_MAPILLARY_UPLOAD_PROTOCOL names:

    upload_sequence          EXIF of every image (the reasons for the rejected ones), the plan of sequences
    -> transfer.upload_image one image, `max_parallel` at a time: an offset-resumable session keyed by the
                             image's md5, or the legacy form POST to {username}/{sequence uuid}/{file name};
                             the task that records the last image closes every sequence (an image manifest
                             and finish_upload, or the legacy DONE object), each once
"""
from __future__ import annotations

from typing import Any

from tasks.mapillary.client import client
from tasks.mapillary.datasets import write_datasets
from tasks.mapillary.harvest import (
    finish_harvest,
    harvest_one_sequence,
    harvest_phase,
    harvest_result,
    note_existing_images,
)
from tasks.mapillary.inputs import HarvestPlan, check_id, check_parallel
from tasks.mapillary.items import run_item
from tasks.mapillary.records import SEQUENCE_TASK, UPLOAD_TASK, HarvestCheckpoints
from tasks.mapillary.tiles import discover_sequences
from tasks.mapillary.upload import finish_upload, stored_upload_plan, upload_one_image
from workers import app
from workers.fanout import Fanout
from workers.jobtask import PENDING, JobContext, JobTask, job_task
from workers.redis_client import get_redis
from workers.storage import get_store, prefix_ref


def dispatch_sequence(job_id: str, item: str) -> None:
    harvest_sequence.apply_async(kwargs={"job_id": job_id, "item": item})


@job_task(app, "mapillary.harvest")
def harvest(job: JobContext, bbox: Any = None, destination: Any = None, organization_id: Any = None,
            creator_id: Any = None, fields: Any = None, quality: Any = "256", max_parallel: Any = None) -> Any:
    """The owner's sequences with images in the bbox: image ids, metadata, thumbnails and the toolset's CSVs."""
    plan = HarvestPlan.from_params({"bbox": bbox, "destination": destination, "organization_id": organization_id,
                                    "creator_id": creator_id, "fields": fields, "quality": quality})
    parallel = check_parallel(max_parallel)
    vendor, checkpoints = client(), HarvestCheckpoints(get_redis(), job.id)
    note_existing_images(get_store(), plan, checkpoints)
    sequences = discover_sequences(job, vendor, plan, checkpoints)
    if not sequences:
        outputs = write_datasets(get_store(), plan, [], checkpoints)
        return harvest_result(plan, {}, checkpoints.counts(), outputs)
    job.progress(harvest_phase(checkpoints.counts()))
    Fanout(get_redis(), job.ledger).start(job.id, sequences, SEQUENCE_TASK, parallel, dispatch_sequence)
    return PENDING


@app.task(bind=True, base=JobTask, name=SEQUENCE_TASK)
def harvest_sequence(self, job_id: str, item: str) -> dict[str, Any]:
    """One sequence of a harvest: image ids, metadata batches, downloads (each step checkpointed)."""
    return run_item(self, job_id, item, harvest_one_sequence, dispatch_sequence, finish_harvest,
                    lambda j: harvest_phase(HarvestCheckpoints(get_redis(), j).counts()))


def dispatch_upload(job_id: str, item: str) -> None:
    upload_image.apply_async(kwargs={"job_id": job_id, "item": item})


@job_task(app, "mapillary.upload_sequence")
def upload_sequence(job: JobContext, images: Any = None, organization_id: Any = None, max_parallel: Any = None) -> Any:
    """Images under a prefix with valid EXIF, split into sequences and uploaded, each image once."""
    prefix = prefix_ref(images, "images")
    if organization_id is not None:
        check_id(organization_id, "organization_id")
    parallel = check_parallel(max_parallel)
    plan = stored_upload_plan(job, prefix)
    keys = [key for sequence in plan["sequences"] for key, _ in sequence["images"]]
    job.progress(f"uploading {len(keys)} images in {len(plan['sequences'])} sequences "
                 f"({len(plan['rejected'])} rejected, {len(plan['duplicates'])} duplicates dropped)")
    Fanout(get_redis(), job.ledger).start(job.id, keys, UPLOAD_TASK, parallel, dispatch_upload)
    return PENDING


@app.task(bind=True, base=JobTask, name=UPLOAD_TASK)
def upload_image(self, job_id: str, item: str) -> dict[str, Any]:
    """One image of an upload, sent once; the last one closes the sequences."""
    return run_item(self, job_id, item, upload_one_image, dispatch_upload, finish_upload,
                    lambda j: "uploading images")
