"""Harvest: one sequence's image ids, metadata batches and thumbnails, and the end of the job."""
from __future__ import annotations

import io
from typing import Any, Iterator

from tasks.mapillary.client import client
from tasks.mapillary.datasets import write_datasets
from tasks.mapillary.inputs import FAILED_SHOWN, MISSING_SHOWN, HarvestPlan
from tasks.mapillary.records import FINISHED_CHECKPOINT_TTL, HarvestCheckpoints
from vendors.mapillary import MAX_IDS_PER_BATCH, ExpiredUrl, MapillaryClient, MapillaryNotFound
from workers.context import JobContext
from workers.fanout import Fanout
from workers.redis_client import get_redis
from workers.storage import ObjectStore, get_store


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
    suffix = f"_{plan.quality}.jpg"
    for ref, size in store.list(plan.images_prefix, "destination"):
        name = ref.name
        if size and name.endswith(suffix) and name[:-len(suffix)].isdigit():
            checkpoints.mark_present(name[:-len(suffix)])


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


def download_batch(vendor: MapillaryClient, store: ObjectStore, plan: HarvestPlan, batch: dict,
                   checkpoints: HarvestCheckpoints) -> list[str]:
    """Download the batch's images not at the destination yet; returns the ids that have no URL.
    The batch's URLs were fetched moments ago, unless this run resumes an earlier one: when the
    CDN refuses one as expired, the rest of the batch gets fresh URLs in one call."""
    urls = {image_id: meta.get(plan.url_field) for image_id, meta in batch["rows"]}
    done = checkpoints.downloaded_among(list(urls))
    wanted = [image_id for image_id in urls if image_id not in done]
    without_url = []
    for position, image_id in enumerate(wanted):
        if not urls[image_id]:
            without_url.append(image_id)
            continue
        try:
            save_thumbnail(vendor, store, plan, image_id, urls[image_id])
        except ExpiredUrl:
            urls.update(fresh_urls(vendor, plan, wanted[position:]))
            if not urls[image_id]:
                without_url.append(image_id)
                continue
            save_thumbnail(vendor, store, plan, image_id, urls[image_id])
        checkpoints.mark_downloaded(image_id)
    return without_url


def harvest_one_sequence(job: JobContext, sequence_id: str) -> dict[str, Any]:
    """One sequence of a harvest: image ids, metadata batches, downloads (each step checkpointed)."""
    plan, vendor, store = HarvestPlan.from_params(job.params), client(), get_store()
    checkpoints = HarvestCheckpoints(get_redis(), job.id)
    image_ids = checkpoints.image_ids(sequence_id)
    if image_ids is None:
        try:
            image_ids = vendor.image_ids_of_sequence(sequence_id)
        except MapillaryNotFound:
            return {"sequence": sequence_id, "images": 0, "sequence_gone": True}
        checkpoints.save_image_ids(sequence_id, image_ids)
    missing, without_url = [], []
    for number, image_batch in enumerate(chunks(image_ids, MAX_IDS_PER_BATCH)):
        job.check_canceled()
        batch = checkpoints.batch(sequence_id, number)
        if batch is None:
            batch = fetch_batch(vendor, plan, image_batch)
            checkpoints.save_batch(sequence_id, number, batch)
        missing += batch["missing"]
        without_url += download_batch(vendor, store, plan, batch, checkpoints)
    return {"sequence": sequence_id, "images": len(image_ids), "missing_images": missing,
            "without_thumbnail": without_url}


def finish_harvest(job: JobContext) -> None:
    """Every sequence has an outcome: write the datasets and end the job."""
    plan = HarvestPlan.from_params(job.params)
    checkpoints = HarvestCheckpoints(get_redis(), job.id)
    outcomes = job.ledger.items(job.id)
    failed = {seq: o["error"] for seq, o in outcomes.items() if o["state"] != "succeeded"}
    result = harvest_result(plan, outcomes, checkpoints.counts(),
                            write_datasets(get_store(), plan, sorted(outcomes), checkpoints))
    Fanout().finish(job.id, result, failed and {
        "type": "SomeSequencesFailed", "message": f"{len(failed)} of {len(outcomes)} sequences failed: "
                                                  f"{', '.join(sorted(failed)[:FAILED_SHOWN])}", "sequences": failed})
    checkpoints.expire(FINISHED_CHECKPOINT_TTL)


def harvest_result(plan: HarvestPlan, outcomes: dict[str, dict], counts: dict[str, int],
                   outputs: dict[str, str]) -> dict[str, Any]:
    missing = sorted(i for o in outcomes.values() for i in o.get("missing_images", []))
    return {
        plan.owner_field: plan.owner_id, "bbox": list(plan.bbox), "quality": plan.quality,
        "tiles": counts.get("tiles", 0), "sequences": len(outcomes),
        "images_listed": counts.get("images_listed", 0), "metadata_fetched": counts.get("metadata_fetched", 0),
        "images_downloaded": counts.get("images_downloaded", 0),
        "images_already_present": counts.get("images_already_present", 0),
        "images_missing": len(missing), "missing_image_ids": missing[:MISSING_SHOWN],
        "images_without_thumbnail": sorted(i for o in outcomes.values() for i in o.get("without_thumbnail", [])),
        "sequences_gone": sorted(s for s, o in outcomes.items() if o.get("sequence_gone")),
        "outputs": outputs,
    }
