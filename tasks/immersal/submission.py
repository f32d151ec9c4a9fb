"""Submitting a map's images: the workspace prepared, chunks of images sent once each, cut-off calls settled."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from celery.exceptions import SoftTimeLimitExceeded

from geoqueue import jobs
from geoqueue.routes import queue_for
from geoqueue.s3ref import S3Ref
from tasks.immersal.client import client
from tasks.immersal.construction import create_once, record_map
from tasks.immersal.inputs import check_map_ids
from tasks.immersal.records import (
    CHUNK_TASK,
    SETTLE,
    START,
    STEP_PHASES,
    SUBMIT,
    Stopped,
    WorkspaceLost,
    _mark_calling_script,
    calling_key,
    calls_key,
    chunks_key,
    dispatch_step,
    image_key,
    job_state,
    log,
    move_step,
    sent_key,
    state_key,
    working_key,
)
from tasks.immersal.steps import fail_and_free, step_task
from tasks.immersal.workspace import free_workspace, hand_over, hold_workspace, retire, workspace_lease, workspace_name
from vendors.errors import TransientError, VendorError
from vendors.immersal import ImmersalClient
from workers import app
from workers.fanout import Fanout
from workers.jobtask import InvalidInput, JobError, JobTask, error_dict, retry_or_raise
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import is_finished, report
from workers.storage import ObjectStore, get_store, prefix_ref


def extend_ids(extend: Any) -> list[int]:
    return check_map_ids(extend, "extend", low=0) if extend is not None else []


def save_chunks(job_id: str, rows: list[dict], chunk_size: int) -> None:
    chunks = {f"chunk-{n // chunk_size:04d}": json.dumps(rows[n:n + chunk_size]) for n in range(0, len(rows), chunk_size)}
    pipe = get_redis().pipeline()
    pipe.hset(chunks_key(job_id), mapping=chunks)
    pipe.hset(state_key(job_id), mapping={"images": len(rows), "chunks": len(chunks)})
    for key in (chunks_key(job_id), state_key(job_id)):
        pipe.expire(key, jobs.RECORD_TTL_SECONDS)
    pipe.execute()


@step_task("immersal.start", START)
def start(task, job) -> None:
    """The workspace is this job's now: a restore job restores; a build prepares and fans out its chunks."""
    bank = int(job_state(job.id)["bank"])
    hold_workspace(job.id, bank)
    if job.name == "immersal.restore":
        restore_into_workspace(task, job, bank)
    else:
        prepare_and_submit(task, job, bank)


def prepare_and_submit(task, job, bank: int) -> None:
    r, ledger = get_redis(), get_ledger()
    state = job_state(job.id)
    total = int(state["images"])
    # Until the fan-out has begun no image is sent, so emptying the workspace again is safe.
    if not r.hexists(jobs.job_key(job.id), "item_task"):
        ledger.transition(job.id, jobs.RUNNING, phase=STEP_PHASES[START])
        vendor = client()
        vendor.clear(anchor=True, bank=bank)
        for map_id in extend_ids(job.params.get("extend")):
            vendor.restore(map_id, clear=False)
        status = vendor.status(bank)
        base, limit = int(status.get("imageCount", 0)), int(status.get("imageMax", 0))
        if base + total > limit:
            raise InvalidInput(f"images: the workspace holds {base} restored images; {total} more exceed "
                               f"its imageMax of {limit}", field="images")
        r.hset(state_key(job.id), "base", base)
        ledger.transition(job.id, jobs.RUNNING, phase=STEP_PHASES[SUBMIT], done=0, total=total)
        chunk_names = sorted(r.hkeys(chunks_key(job.id)))
        parallel = job.params.get("max_parallel") or get_settings().immersal_max_parallel
        Fanout(r, ledger).start(job.id, chunk_names, CHUNK_TASK, parallel, send_chunk)
    # The fan-out counts chunks in the job's done/total; the job shows images.
    report(task, job.id, STEP_PHASES[SUBMIT], int(r.scard(sent_key(job.id))), total)
    move_step(job.id, SUBMIT, START)


def send_chunk(job_id: str, item: str) -> None:
    app.send_task(CHUNK_TASK, kwargs={"job_id": job_id, "item": item}, queue=queue_for(CHUNK_TASK))


@app.task(bind=True, base=JobTask, name=CHUNK_TASK)
def submit_chunk(self, job_id: str, item: str) -> dict:
    """Submit one chunk's images, one at a time (bounded memory); safe to run again."""
    r, ledger = get_redis(), get_ledger()
    job = ledger.get(job_id)
    if job is None or ledger.item_is_recorded(job_id, item):
        return {"job_id": job_id, "item": item, "skipped": True}
    if job.finished:
        free_workspace(job_id)
        return {"job_id": job_id, "item": item, "skipped": True}
    r.sadd(working_key(job_id), item)
    error = None
    try:
        outcome = submit_images(self, job, item)
    except Stopped:
        outcome = None
    except SoftTimeLimitExceeded:
        raise self.retry(countdown=1, max_retries=get_settings().max_retries)
    except TransientError as exc:
        retry_or_raise(self, exc)
        error, outcome = exc, {"state": "failed", "error": error_dict(exc)}
    except (VendorError, JobError) as exc:
        error, outcome = exc, {"state": "failed", "error": error_dict(exc)}
    finally:
        r.srem(working_key(job_id), item)
    if outcome is None:
        free_workspace(job_id)
        return {"job_id": job_id, "item": item, "stopped": True}
    Fanout(r, ledger).finish_item(job_id, item, outcome, send_chunk)
    if error is not None:
        fail_and_free(self, job_id, error)
    state = job_state(job_id)
    report(self, job_id, STEP_PHASES[SUBMIT], int(r.scard(sent_key(job_id))), int(state["images"]))
    if ledger.finished_count(job_id) >= int(state["chunks"]):
        dispatch_step(job_id, SETTLE, START, SUBMIT)
    return {"job_id": job_id, "item": item, **outcome}


def submit_images(task, job, item: str) -> dict:
    r = get_redis()
    rows = json.loads(r.hget(chunks_key(job.id), item) or "[]")
    bank = int(job_state(job.id)["bank"])
    prefix = prefix_ref(job.params["images"], "images")
    vendor, store, lease = client(), get_store(), workspace_lease(bank)
    cut_off = 0
    for row in rows:
        key = image_key(row)
        if r.sismember(sent_key(job.id), key):
            continue
        if r.hexists(calling_key(job.id), key):
            cut_off += 1              # an earlier attempt's call may have reached Immersal: settle decides
            continue
        if is_finished(job.id):
            raise Stopped(job.id)
        if not lease.refresh(job.id):
            raise WorkspaceLost(f"the job lost its lease on workspace {workspace_name(bank)} during submission")
        capture_once(vendor, job.id, row, read_image(store, prefix.child(row["file"])), bank)
        get_ledger().progress(job.id, STEP_PHASES[SUBMIT], int(r.scard(sent_key(job.id))))
    return {"state": "succeeded", "images": len(rows), "cut_off_calls": cut_off}


def read_image(store: ObjectStore, ref: S3Ref) -> bytes:
    try:
        return store.read(ref)
    except ClientError as exc:
        # Checked before the job began, so it was deleted or became unreadable since.
        code = exc.response.get("Error", {}).get("Code", "error")
        raise JobError(f"images: {ref} could not be read ({code})", field="images") from exc


def capture_once(vendor: ImmersalClient, job_id: str, row: dict, image: bytes, bank: int) -> None:
    """One /capture, bracketed by records: "calling" just before, "sent" as soon as Immersal answers."""
    r, key = get_redis(), image_key(row)
    _mark_calling_script()(keys=[calling_key(job_id), calls_key(job_id)], args=[key, jobs.RECORD_TTL_SECONDS])
    try:
        vendor.capture(image, run=row["run"], index=row["index"], position=row["position"], rotation=row["rotation"],
                       intrinsics=row["intrinsics"], gps=row["gps"], anchor=row["anchor"], bank=bank)
    except TransientError as exc:
        if exc.status is not None:    # Immersal answered (5xx, 429): it did not take the image
            r.hdel(calling_key(job_id), key)
        raise
    except VendorError:
        r.hdel(calling_key(job_id), key)
        raise
    pipe = r.pipeline()
    pipe.sadd(sent_key(job_id), key)
    pipe.hdel(calling_key(job_id), key)
    pipe.expire(sent_key(job_id), jobs.RECORD_TTL_SECONDS)
    pipe.execute()


@step_task("immersal.transfer.settle", SETTLE)
def settle(task, job) -> None:
    """Every chunk is done: make sure the workspace holds exactly this job's images, then construct."""
    state = job_state(job.id)
    bank = int(state["bank"])
    hold_workspace(job.id, bank)
    vendor = client()
    summary: dict[str, Any] = {"images": int(state["images"]), "bank": bank}
    if extend_ids(job.params.get("extend")):
        summary["extended"] = extend_ids(job.params.get("extend"))
    if "construct_at" not in state:
        Fanout(get_redis(), get_ledger()).close(job.id)     # every chunk has its outcome
        report(task, job.id, "checking workspace")
        summary |= resolve_cut_off_calls(job, vendor, state, bank)
        count = int(vendor.status(bank).get("imageCount", 0))
        expected = int(state["base"]) + int(state["images"])
        if count != expected:
            raise JobError(workspace_mismatch(bank, count, int(state["base"]), int(state["images"])))
    report(task, job.id, STEP_PHASES[SETTLE], int(get_redis().scard(sent_key(job.id))), int(state["images"]))
    options = job.params.get("options") or {}
    map_id = create_once(vendor, job.id, job.params["name"], bank, lambda: vendor.construct(
        job.params["name"], window_size=job.params.get("window_size", 0), bank=bank, **options))
    record_map(job.id, map_id, summary)
    workspace_lease(bank).release(job.id)
    hand_over(bank)


def workspace_mismatch(bank: int, count: int, base: int, sent: int) -> str:
    return (f"workspace {workspace_name(bank)} holds {count} images where {base} restored and {sent} submitted were "
            "expected: another client changed it, or new images reuse (run, index) pairs of the restored maps")


def resolve_cut_off_calls(job, vendor: ImmersalClient, state: dict, bank: int) -> dict:
    """Calls cut off without an answer (a worker died, a timeout): /status counts the workspace (Immersal
    cannot list it), and with every other image confirmed the difference is how many of them arrived."""
    r = get_redis()
    calling = r.hgetall(calling_key(job.id))
    if not calling:
        return {}
    base, confirmed = int(state["base"]), int(r.scard(sent_key(job.id)))
    count = int(vendor.status(bank).get("imageCount", 0))
    arrived = count - base - confirmed
    if not 0 <= arrived <= len(calling):
        raise JobError(workspace_mismatch(bank, count, base, confirmed))
    # A call that never left was cut off right after it was marked, later than the calls that had
    # reached Immersal and were waiting for its answer: send the newest ones, then count again.
    newest_first = sorted(calling, key=lambda key: int(calling[key]), reverse=True)
    missing, rest = newest_first[:len(calling) - arrived], newest_first[len(calling) - arrived:]
    send_again(job, vendor, missing, bank)
    if missing and rest and int(vendor.status(bank).get("imageCount", 0)) != base + confirmed + len(calling):
        # The guess was wrong: send the rest too; Immersal replaces an image sent with the same run and index.
        send_again(job, vendor, rest, bank)
        log.warning("job %s: %d cut-off image submissions were sent again, some may have arrived before",
                    job.id, len(calling))
        missing = newest_first
    elif rest:
        pipe = r.pipeline()
        pipe.sadd(sent_key(job.id), *rest)
        pipe.hdel(calling_key(job.id), *rest)
        pipe.execute()
    return {"cut_off_calls": {"count": len(calling), "arrived": arrived, "sent_again": len(missing)}}


def send_again(job, vendor: ImmersalClient, keys: list[str], bank: int) -> None:
    if not keys:
        return
    r, store = get_redis(), get_store()
    prefix = prefix_ref(job.params["images"], "images")
    wanted = set(keys)
    for chunk in r.hvals(chunks_key(job.id)):
        for row in json.loads(chunk):
            if image_key(row) in wanted:
                r.hdel(calling_key(job.id), image_key(row))
                capture_once(vendor, job.id, row, read_image(store, prefix.child(row["file"])), bank)


def restore_into_workspace(task, job, bank: int) -> None:
    map_id, clear = job.params["map_id"], job.params.get("clear", True)
    report(task, job.id, f"restoring map {map_id}")
    vendor = client()
    vendor.restore(map_id, clear=clear)
    count = int(vendor.status(bank).get("imageCount", 0))
    result = {"map_id": map_id, "bank": bank, "cleared": clear, "workspace_images": count}
    get_ledger().transition(job.id, jobs.SUCCEEDED, result=result)
    workspace_lease(bank).release(job.id)
    retire(job.id)
