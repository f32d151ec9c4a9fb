"""Upload: the plan of sequences, one image sent once, and the sequences closed once."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from config.redis_client import get_redis
from geoqueue.s3ref import S3Ref
from runtime import CutOff, InvalidInput, JobContext, Once
from runtime.fanout import Fanout
from services.app_context import carried
from services.storage import ObjectStore, get_store
from tasks.mapillary.account import RESUMABLE, client, legacy_credentials, upload_protocol
from tasks.mapillary.exif import EXIF_HEAD_BYTES, Geotag, Rejected, read_geotag
from tasks.mapillary.inputs import FAILED_SHOWN, MISSING_SHOWN
from tasks.mapillary.records import UploadRecords
from tasks.mapillary.sequences import Placed, split_sequences
from vendors.mapillary.resumable_upload import upload_session_key

CHECK_THREADS = 8                      # concurrent S3 reads of image headers while planning an upload
# A closing is three short requests (offset, manifest, finish_upload). Begun less than this ago it may still
# be running, and a second finisher (the last images recorded at the same moment) waits for it rather than
# close again; begun longer ago it is taken as cut off.
CLOSING_IN_FLIGHT_S = 20.0


# --- upload: the plan ---
def check_image(store: ObjectStore, ref: S3Ref, size: int) -> Geotag | str:
    """The image's geotag, or why it cannot be uploaded."""
    if size == 0:
        return "empty file"
    try:
        return read_geotag(store.head_bytes(ref, min(size, EXIF_HEAD_BYTES)))
    except Rejected as reason:
        return str(reason)


def make_upload_plan(job: JobContext, prefix: S3Ref, protocol: str) -> dict[str, Any]:
    store = get_store()
    objects = [(ref, size) for ref, size in store.list(prefix, "images") if not ref.key.endswith("/")]
    if not objects:
        raise InvalidInput(f"images: nothing found under {prefix}", field="images")
    job.progress(f"checking EXIF of {len(objects)} images")
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        checked = list(pool.map(carried(lambda found: check_image(store, *found)), objects))
    rejected = {ref.uri: reason for (ref, _), reason in zip(objects, checked, strict=True) if isinstance(reason, str)}
    placed = [Placed(ref.key, geotag) for (ref, _), geotag in zip(objects, checked, strict=True)
              if isinstance(geotag, Geotag)]
    if not placed:
        raise InvalidInput(f"images: no image under {prefix} can be uploaded", field="images",
                           rejected=dict(list(rejected.items())[:MISSING_SHOWN]))
    split = split_sequences(placed)
    return {
        "protocol": protocol, "bucket": prefix.bucket, "images_found": len(objects), "rejected": rejected,
        "duplicates": {S3Ref(prefix.bucket, k).uri: f"near-duplicate of {S3Ref(prefix.bucket, v).uri}"
                       for k, v in split.duplicates.items()},
        "sequences": [{"uuid": str(uuid.uuid4()),
                       "images": [[p.name, p.name[len(prefix.key):].replace("/", "_")] for p in sequence],
                       "captured": [sequence[0].geotag.captured_at, sequence[-1].geotag.captured_at]}
                      for sequence in split.sequences],
    }


def plan_upload(job: JobContext, prefix: S3Ref) -> dict[str, Any]:
    """The job's plan, made once: a redelivered start reuses it (and its sequence uuids)."""
    return UploadRecords(get_redis(), job.id).plan_once(lambda: make_upload_plan(job, prefix, upload_protocol()))


# --- upload: one image ---
def upload_one_image(job: JobContext, key: str) -> dict[str, Any]:
    """One image of an upload, sent once: its content names its session, so a second attempt resumes it."""
    records = UploadRecords(get_redis(), job.id)
    protocol, bucket = records.protocol_and_bucket()
    placement = records.placement(key)
    data = get_store().read(S3Ref(bucket, key), "images")
    vendor = client()
    if protocol == RESUMABLE:
        handle = vendor.upload(upload_session_key(data, ".jpg"), data, entity_type="image/jpeg")
        return {"sequence": placement["sequence"], "handle": handle}
    uploaded = vendor.legacy_upload(data, placement["name"], legacy_credentials(), placement["uuid"])
    return {"sequence": placement["sequence"], "key": uploaded}


# --- upload: closing the sequences ---
def close_sequence(job: JobContext, sequence: dict, outcomes: dict[str, dict], protocol: str) -> dict[str, str]:
    """Bundle a fully uploaded sequence, once however often the job finishes: the image manifest
    and finish_upload, or the legacy DONE object.

    Nothing can look a closing up: finish_upload answers only a cluster id, no documented endpoint
    tells what became of an upload (images show in the API once processed, hours or days later;
    docs/vendors/mapillary.md#after-an-upload), and a legacy upload is a form POST reading nothing back. So a closing
    cut off without an answer (its worker died, its connection dropped) is made again, and the
    repeat lands on the same thing: the manifest's session key is its content's md5, so the repeat
    resumes that session and finishes the same file handle, which mapillary_tools retries as safe
    (uploader.py, _finish_upload_retryable); the DONE object is written again under the same key.
    """
    vendor, once = client(), Once(job.id)
    if protocol == RESUMABLE:
        handles = [outcomes[key]["handle"] for key, _ in sequence["images"]]
        organization_id = job.params.get("organization_id")

        def close() -> dict[str, str]:
            return {"cluster_id": vendor.upload_image_bundle(handles, organization_id)}
    else:
        def close() -> dict[str, str]:
            return {"done_marker": vendor.legacy_finish_sequence(legacy_credentials(), sequence["uuid"])}
    name = f"mapillary:close:{sequence['uuid']}"
    try:
        return once.run(name, close, in_flight=CLOSING_IN_FLIGHT_S).result
    except CutOff:      # nothing to look up: make it again, as above
        once.forget(name)
        return once.run(name, close).result


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def finish_upload(job: JobContext) -> None:
    """Every image has an outcome: close each sequence whose images all went up, then end the job."""
    plan = UploadRecords(get_redis(), job.id).plan()
    outcomes = job.ledger.items(job.id)
    sequences, failed = [], {}
    for sequence in plan["sequences"]:
        keys = [key for key, _ in sequence["images"]]
        errors = {S3Ref(plan["bucket"], k).uri: outcomes[k]["error"] for k in keys
                  if outcomes[k]["state"] != "succeeded"}
        summary = {"uuid": sequence["uuid"], "images": len(keys), "first_image": S3Ref(plan["bucket"], keys[0]).uri,
                   "captured_from": iso(sequence["captured"][0]), "captured_to": iso(sequence["captured"][1])}
        if errors:
            failed.update(errors)
            sequences.append(summary | {"state": "failed"})
        else:
            closing = close_sequence(job, sequence, outcomes, plan["protocol"])
            sequences.append(summary | {"state": "uploaded", **closing})
    result = {"protocol": plan["protocol"], "images_found": plan["images_found"],
              "uploaded": sum(1 for o in outcomes.values() if o["state"] == "succeeded"),
              "rejected": plan["rejected"], "duplicates": plan["duplicates"], "sequences": sequences}
    Fanout().finish(job.id, result, failed and {
        "type": "SomeImagesFailed", "message": f"{len(failed)} images failed to upload: "
                                               f"{', '.join(sorted(failed)[:FAILED_SHOWN])}", "images": failed})
