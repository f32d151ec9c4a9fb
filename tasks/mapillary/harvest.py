"""Harvest: one sequence's image ids, metadata batches and thumbnails, and the end of the job."""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

from config.redis_client import get_redis
from config.settings import get_settings
from runtime import JobContext
from runtime.fanout import Fanout
from services.storage import ObjectStore, get_store
from tasks.mapillary.account import client
from tasks.mapillary.calls import Calls
from tasks.mapillary.datasets import write_datasets
from tasks.mapillary.inputs import FAILED_SHOWN, MISSING_SHOWN, HarvestPlan
from tasks.mapillary.records import FINISHED_CHECKPOINT_TTL, HarvestCheckpoints
from tasks.mapillary.window import capture_time_text, window_summary
from vendors.mapillary.client import MapillaryClient
from vendors.mapillary.errors import ExpiredUrl, MapillaryNotFound
from vendors.mapillary.graph import MAX_IDS_PER_BATCH

PRESENT_NOTED_AT_ONCE = 1000           # ids of images found at the destination, sent to Redis together


def harvest_phase(counts: dict[str, int]) -> str:
    """The progress line: tiles, sequences, images listed, metadata fetched, images downloaded."""
    present = counts.get("images_already_present", 0)
    return (f"tiles {counts.get('tiles', 0)}, sequences listed {counts.get('sequences_listed', 0)}, "
            f"images listed {counts.get('images_listed', 0)}, metadata {counts.get('metadata_fetched', 0)}, "
            f"downloaded {counts.get('images_downloaded', 0)}" + (f" (+{present} already there)" if present else ""))


def show_progress(job: JobContext) -> None:
    """After each sequence: what the harvest has done so far; done counts the sequences with an outcome."""
    job.progress_of_items(harvest_phase(HarvestCheckpoints(get_redis(), job.id).counts()))


def note_existing_images(store: ObjectStore, plan: HarvestPlan, checkpoints: HarvestCheckpoints) -> None:
    """Images at the destination already (an earlier harvest) are not downloaded again."""
    suffix, found = f"_{plan.quality}.jpg", []
    for ref, size in store.list(plan.images_prefix, "destination"):
        name = ref.name
        if size and name.endswith(suffix) and name[:-len(suffix)].isdigit():
            found.append(name[:-len(suffix)])
        if len(found) >= PRESENT_NOTED_AT_ONCE:
            checkpoints.note_present(found)
            found = []
    checkpoints.note_present(found)


# --- harvest: one sequence ---
def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def fetch_batch(vendor: MapillaryClient, plan: HarvestPlan, image_ids: list[str]) -> dict:
    """Metadata of up to 50 images. One id that no longer exists fails a batch at the vendor; the
    client then asks again without it (one id at a time when the vendor does not say which)."""
    found, missing = vendor.get_images_skipping_missing(image_ids, plan.request_fields)
    rows = [[i, {k: v for k, v in found[i].items() if k != "id"}] for i in image_ids if i in found]
    return {"rows": rows, "missing": missing}


def save_thumbnail(vendor: MapillaryClient, store: ObjectStore, plan: HarvestPlan, image_id: str, url: str) -> None:
    buffer = io.BytesIO()
    vendor.download(url, buffer)
    store.write(plan.image_ref(image_id), buffer.getvalue(), "image/jpeg")


def fresh_urls(vendor: MapillaryClient, plan: HarvestPlan, image_ids: list[str]) -> dict[str, str | None]:
    found, _ = vendor.get_images_skipping_missing(image_ids, [plan.url_field])
    return {image_id: found.get(image_id, {}).get(plan.url_field) for image_id in image_ids}


class BatchUrls:
    """The thumbnail URLs of one batch, shared by the calls downloading its images. The batch's
    URLs were fetched moments ago, unless this run resumes an earlier one: when the CDN refuses one
    as expired, the batch's images not downloaded yet get fresh URLs in one call, made by the first
    call that meets the expiry; the others use what it fetched."""

    def __init__(self, plan: HarvestPlan, batch: dict, wanted: list[str], done: set[str]) -> None:
        self.plan = plan
        self.urls = {image_id: meta.get(plan.url_field) for image_id, meta in batch["rows"]}
        self.left = [image_id for image_id in wanted if image_id not in done]
        self.done = set(done)
        self.lock = threading.Lock()

    def renewed(self, image_id: str, expired: str) -> str | None:
        with self.lock:
            if self.urls[image_id] == expired:
                self.urls.update(fresh_urls(client(), self.plan, [i for i in self.left if i not in self.done]))
            return self.urls[image_id]

    def downloaded(self, image_id: str) -> None:
        with self.lock:
            self.done.add(image_id)


def download_one(store: ObjectStore, plan: HarvestPlan, urls: BatchUrls, image_id: str,
                 checkpoints: HarvestCheckpoints) -> bool:
    """One thumbnail to the destination, checkpointed; False when the image has no URL."""
    vendor, url = client(), urls.urls[image_id]
    if not url:
        return False
    try:
        save_thumbnail(vendor, store, plan, image_id, url)
    except ExpiredUrl:
        url = urls.renewed(image_id, url)
        if not url:
            return False
        save_thumbnail(vendor, store, plan, image_id, url)
    checkpoints.mark_downloaded(image_id)
    urls.downloaded(image_id)
    return True


def fetch_and_save_batch(plan: HarvestPlan, checkpoints: HarvestCheckpoints, sequence_id: str, number: int,
                         image_ids: list[str]) -> dict:
    batch = fetch_batch(client(), plan, image_ids)
    checkpoints.save_batch(sequence_id, number, batch)
    return batch


def harvest_one_sequence(job: JobContext, sequence_id: str) -> dict[str, Any]:
    """One sequence of a harvest: its image ids, then its metadata batches and thumbnails, up to
    GEOQUEUE_MAPILLARY_CALLS_PER_SEQUENCE calls in flight at once. Each batch and each image is
    checkpointed as soon as its call ends, so a task that runs again redoes nothing finished."""
    plan, store = HarvestPlan.from_params(job.params), get_store()
    checkpoints = HarvestCheckpoints(get_redis(), job.id)
    image_ids = checkpoints.image_ids(sequence_id)
    if image_ids is None:
        try:
            image_ids = client().image_ids_of_sequence(sequence_id)
        except MapillaryNotFound:
            return {"sequence": sequence_id, "images": 0, "sequence_gone": True}
        checkpoints.save_image_ids(sequence_id, image_ids)
    calls = Calls(get_settings().mapillary_calls_per_sequence)
    batches: dict[int, dict] = {}
    without_url: set[str] = set()

    def download_batch(number: int, batch: dict) -> None:
        job.check_canceled()
        batches[number] = batch
        # Images captured before the window are left out; those already at the destination skipped.
        wanted = [image_id for image_id, meta in batch["rows"] if plan.in_window(meta.get("captured_at"))]
        checkpoints.skip_present(wanted)
        urls = BatchUrls(plan, batch, wanted, checkpoints.downloaded_among(wanted))
        for image_id in urls.left:
            calls.add(download_one, store, plan, urls, image_id, checkpoints,
                      then=lambda found, image_id=image_id: found or without_url.add(image_id))

    for number, image_batch in enumerate(chunks(image_ids, MAX_IDS_PER_BATCH)):
        batch = checkpoints.batch(sequence_id, number)
        if batch is None:
            calls.add(fetch_and_save_batch, plan, checkpoints, sequence_id, number, image_batch,
                      then=lambda fetched, number=number: download_batch(number, fetched))
        else:
            download_batch(number, batch)
    calls.run()
    ordered = [batches[number] for number in sorted(batches)]
    return {"sequence": sequence_id, "images": len(image_ids),
            "missing_images": [i for batch in ordered for i in batch["missing"]],
            "without_thumbnail": [i for batch in ordered for i, _ in batch["rows"] if i in without_url]}


def finish_harvest(job: JobContext) -> None:
    """Every sequence has an outcome: write the datasets and end the job."""
    plan = HarvestPlan.from_params(job.params)
    checkpoints = HarvestCheckpoints(get_redis(), job.id)
    outcomes = job.ledger.items(job.id)
    failed = {seq: o["error"] for seq, o in outcomes.items() if o["state"] != "succeeded"}
    batches = checkpoints.all_batches()
    outputs = write_datasets(get_store(), plan, sorted(outcomes), checkpoints.all_image_ids(), batches)
    result = harvest_result(plan, outcomes, checkpoints.counts(), outputs,
                            window_summary(plan, batches, job.record.created))
    Fanout().finish(job.id, result, failed and {
        "type": "SomeSequencesFailed", "message": f"{len(failed)} of {len(outcomes)} sequences failed: "
                                                  f"{', '.join(sorted(failed)[:FAILED_SHOWN])}", "sequences": failed})
    checkpoints.expire(FINISHED_CHECKPOINT_TTL)


def harvest_result(plan: HarvestPlan, outcomes: dict[str, dict], counts: dict[str, int], outputs: dict[str, str],
                   window: dict[str, Any]) -> dict[str, Any]:
    """What the harvest did: images_downloaded are the new images, images_already_present those it
    met already at the destination (skipped), and `window` (window_summary) what it left out as
    captured before captured_since and the watermark for the next run."""
    missing = sorted(i for o in outcomes.values() for i in o.get("missing_images", []))
    since = None if plan.captured_since is None else capture_time_text(plan.captured_since)
    return {
        plan.owner_field: plan.owner_id, "bbox": list(plan.bbox), "quality": plan.quality, "captured_since": since,
        "tiles": counts.get("tiles", 0), "sequences": len(outcomes),
        "images_listed": counts.get("images_listed", 0), "metadata_fetched": counts.get("metadata_fetched", 0),
        "images_downloaded": counts.get("images_downloaded", 0),
        "images_already_present": counts.get("images_already_present", 0), **window,
        "images_missing": len(missing), "missing_image_ids": missing[:MISSING_SHOWN],
        "images_without_thumbnail": sorted(i for o in outcomes.values() for i in o.get("without_thumbnail", [])),
        "sequences_gone": sorted(s for s, o in outcomes.items() if o.get("sequence_gone")),
        "outputs": outputs,
    }
