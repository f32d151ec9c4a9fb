"""Upload: the plan of sequences, one image sent once, and the sequences closed."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from geoqueue import jobs
from geoqueue.s3ref import S3Ref
from tasks.mapillary.client import RESUMABLE, client, legacy_credentials, upload_protocol
from tasks.mapillary.exif import EXIF_HEAD_BYTES, Geotag, Rejected, read_geotag
from tasks.mapillary.inputs import MISSING_SHOWN
from tasks.mapillary.records import CHECKPOINT_TTL, upload_keys
from tasks.mapillary.sequences import Placed, split_sequences
from vendors.mapillary import upload_session_key
from workers.fanout import Fanout
from workers.jobtask import InvalidInput, JobContext
from workers.redis_client import get_ledger, get_redis
from workers.storage import ObjectStore, get_store

CHECK_THREADS = 8                      # concurrent S3 reads of image headers while planning an upload


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
    objects = [(ref, size) for ref, size in store.list(prefix) if not ref.key.endswith("/")]
    if not objects:
        raise InvalidInput(f"images: nothing found under {prefix}", field="images")
    job.progress(f"checking EXIF of {len(objects)} images")
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        checked = list(pool.map(lambda found: check_image(store, *found), objects))
    rejected = {ref.uri: reason for (ref, _), reason in zip(objects, checked) if isinstance(reason, str)}
    placed = [Placed(ref.key, geotag) for (ref, _), geotag in zip(objects, checked) if isinstance(geotag, Geotag)]
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


def stored_upload_plan(job: JobContext, prefix: S3Ref) -> dict[str, Any]:
    """The job's plan, made once: a redelivered start reuses it (and its sequence uuids)."""
    plan_key, images_key, _ = upload_keys(job.id)
    db = get_redis()
    if not db.hexists(plan_key, "plan"):
        db.hsetnx(plan_key, "plan", json.dumps(make_upload_plan(job, prefix, upload_protocol())))
    plan = json.loads(db.hget(plan_key, "plan"))
    placements = {key: json.dumps({"sequence": n, "name": name, "uuid": sequence["uuid"]})
                  for n, sequence in enumerate(plan["sequences"]) for key, name in sequence["images"]}
    pipe = db.pipeline()
    pipe.hset(plan_key, mapping={"protocol": plan["protocol"], "bucket": plan["bucket"]})
    pipe.hset(images_key, mapping=placements)
    pipe.expire(plan_key, CHECKPOINT_TTL)
    pipe.expire(images_key, CHECKPOINT_TTL)
    pipe.execute()
    return plan


# --- upload: one image ---
def upload_one_image(job: jobs.Job, key: str) -> dict:
    plan_key, images_key, _ = upload_keys(job.id)
    protocol, bucket = get_redis().hmget(plan_key, "protocol", "bucket")
    placement = json.loads(get_redis().hget(images_key, key))
    data = get_store().read(S3Ref(bucket, key))
    vendor = client()
    if protocol == RESUMABLE:
        # The session key is the content's md5: a second attempt resumes the same session.
        handle = vendor.upload(upload_session_key(data, ".jpg"), data, entity_type="image/jpeg")
        return {"sequence": placement["sequence"], "handle": handle}
    uploaded = vendor.legacy_upload(data, placement["name"], legacy_credentials(), placement["uuid"])
    return {"sequence": placement["sequence"], "key": uploaded}


# --- upload: closing the sequences ---
def close_sequence(job: jobs.Job, number: int, sequence: dict, outcomes: dict[str, dict], protocol: str) -> dict:
    """Bundle a fully uploaded sequence (once, however often the job finishes): the image
    manifest and finish_upload, or the legacy DONE object."""
    _, _, closed_key = upload_keys(job.id)
    closed = get_redis().hget(closed_key, str(number))
    if closed is not None:
        return json.loads(closed)
    vendor = client()
    if protocol == RESUMABLE:
        handles = [outcomes[key]["handle"] for key, _ in sequence["images"]]
        closing = {"cluster_id": vendor.upload_image_bundle(handles, job.params.get("organization_id"))}
    else:
        closing = {"done_marker": vendor.legacy_finish_sequence(legacy_credentials(), sequence["uuid"])}
    get_redis().hset(closed_key, str(number), json.dumps(closing))
    get_redis().expire(closed_key, CHECKPOINT_TTL)
    return closing


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def finish_upload(job_id: str) -> None:
    """Every image has an outcome: close each sequence whose images all went up, then end the job."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return
    plan_key, _, _ = upload_keys(job_id)
    plan = json.loads(get_redis().hget(plan_key, "plan"))
    outcomes = ledger.items(job_id)
    sequences, failed = [], {}
    for number, sequence in enumerate(plan["sequences"]):
        keys = [key for key, _ in sequence["images"]]
        errors = {S3Ref(plan["bucket"], k).uri: outcomes[k]["error"] for k in keys if outcomes[k]["state"] != "succeeded"}
        summary = {"uuid": sequence["uuid"], "images": len(keys), "first_image": S3Ref(plan["bucket"], keys[0]).uri,
                   "captured_from": iso(sequence["captured"][0]), "captured_to": iso(sequence["captured"][1])}
        if errors:
            failed.update(errors)
            sequences.append(summary | {"state": "failed"})
        else:
            sequences.append(summary | {"state": "uploaded", **close_sequence(job, number, sequence, outcomes,
                                                                              plan["protocol"])})
    result = {"protocol": plan["protocol"], "images_found": plan["images_found"],
              "uploaded": sum(1 for o in outcomes.values() if o["state"] == "succeeded"),
              "rejected": plan["rejected"], "duplicates": plan["duplicates"], "sequences": sequences}
    Fanout(get_redis(), ledger).finish(job_id, result, failed and {
        "type": "SomeImagesFailed", "message": f"{len(failed)} images failed to upload: "
                                               f"{', '.join(sorted(failed)[:10])}", "images": failed})
