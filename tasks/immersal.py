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

import functools
import hashlib
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from botocore.exceptions import ClientError
from celery.exceptions import SoftTimeLimitExceeded

from geoqueue import jobs
from geoqueue.routes import queue_for
from geoqueue.s3ref import S3Ref
from tasks.immersal_inputs import (
    POSITION_FIELDS,
    check_image_object,
    check_images,
    check_intrinsics,
    check_map_ids,
    check_map_name,
    check_maps_exist,
    check_number,
    check_options,
    check_room,
    check_whole,
    read_manifest,
)
from vendors.errors import TransientError, VendorError
from vendors.geodesy import map_to_wgs84
from vendors.immersal import (
    FAILED,
    LOCALIZABLE,
    MAX_LOCALIZE_MAPS,
    ImmersalClient,
    ImmersalNotFound,
)
from workers import app
from workers.fanout import Fanout
from workers.inputs import object_ref, prefix_ref
from workers.jobtask import (
    PENDING,
    InvalidInput,
    JobContext,
    JobError,
    JobTask,
    error_dict,
    fail,
    job_task,
    retry_or_raise,
)
from workers.lease import Lease
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import Steps, grace_seconds, is_finished, report
from workers.storage import ObjectStore, get_store
from workers.token_cache import RedisTokenStore

log = logging.getLogger("geoqueue.immersal")

MANIFEST_NAME = "manifest.csv"
DEFAULT_CHUNK_SIZE = 8
MAX_CHUNK_SIZE = 100
MAX_PARALLEL = 32
MIN_STITCH_MAPS = 2
POLL_CALL_TIMEOUT = 10.0          # the poller runs every few seconds: a slow answer waits for the next round
POLL_LOCK_SECONDS = 60
CLOCK_SLACK_SECONDS = 300         # Immersal's clock against ours, when finding a map an interrupted call made
MAP_FIELDS = ("id", "name", "status", "size", "bank", "privacy", "latitude", "longitude", "altitude",
              "created", "modified", "sha256_al")

# Redis keys beyond the ledger's.
ACTIVE_KEY = "gq:immersal:active"        # jobs in progress that the poller looks after
CLAIMS_KEY = "gq:immersal:map-jobs"      # map id -> the job that created it
POLL_LOCK_KEY = "gq:immersal:poll-lock"

# Where a job is; each step after QUEUED is run by one task (or, for CONSTRUCTION, by the poller).
QUEUED, START, SUBMIT, SETTLE, CONSTRUCTION, DOWNLOAD = "queued", "start", "submit", "settle", "construction", "download"
STEP_TASKS = {START: "immersal.start", SETTLE: "immersal.transfer.settle", DOWNLOAD: "immersal.transfer.download"}
STEP_PHASES = {START: "preparing workspace", SUBMIT: "submitting images", SETTLE: "constructing map",
               DOWNLOAD: "downloading map"}
WORKSPACE_STEPS = (QUEUED, START, SUBMIT, SETTLE)   # the steps that need the workspace lease
CHUNK_TASK = "immersal.transfer.submit_chunk"


class WorkspaceLost(JobError):
    kind = "WorkspaceLost"


class ConstructionFailed(JobError):
    kind = "ConstructionFailed"


class Stopped(Exception):
    """The job finished elsewhere (failed, canceled) while this task worked for it."""


# --- the vendor, configured from settings ---
def client(timeout: float | None = None, account: bool = True) -> ImmersalClient:
    """The configured account; `account=False` allows anonymous calls (public maps only)."""
    s = get_settings()
    secret = s.immersal_token or s.immersal_password
    if secret is None and account:
        raise JobError("Immersal credentials are not configured "
                       "(GEOQUEUE_IMMERSAL_TOKEN, or GEOQUEUE_IMMERSAL_LOGIN and GEOQUEUE_IMMERSAL_PASSWORD)")
    store = RedisTokenStore(get_redis(), "immersal", secret.get_secret_value()) if secret else None
    return ImmersalClient(
        s.immersal_url, token=s.immersal_token.get_secret_value() if s.immersal_token else None,
        login=s.immersal_login, password=s.immersal_password.get_secret_value() if s.immersal_password else None,
        token_store=store, timeout=timeout or s.immersal_timeout)


# --- the job's own records ---
def state_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal"            # hash: step, step_at, bank, images, chunks, base, map_id, ...


STEPS = Steps(state_key, STEP_TASKS)
move_step, send_step, dispatch_step = STEPS.move, STEPS.send, STEPS.dispatch


def chunks_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:chunks"     # hash: chunk name -> JSON list of manifest rows


def sent_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:sent"       # set of "run:index" Immersal confirmed


def calling_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:calling"    # hash "run:index" -> order in which its capture call began


def calls_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:calls"      # counter giving that order (Redis's, not worker clocks)


def working_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:working"    # set of chunks being submitted right now


def busy_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:busy"       # lease: one step task at a time per job


def scratch_keys(job_id: str) -> list[str]:
    return [state_key(job_id), chunks_key(job_id), sent_key(job_id), calling_key(job_id), calls_key(job_id),
            working_key(job_id)]


def job_state(job_id: str) -> dict[str, str]:
    return get_redis().hgetall(state_key(job_id))


def image_key(row: dict) -> str:
    return f"{row['run']}:{row['index']}"


_MARK_CALLING = """
redis.call('HSET', KEYS[1], ARGV[1], redis.call('INCR', KEYS[2]))
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""

@functools.lru_cache(maxsize=1)
def _mark_calling_script():
    return get_redis().register_script(_MARK_CALLING)


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


# --- the workspace lease on (account, bank) ---
def workspace_name(bank: int) -> str:
    return f"{get_settings().immersal_account}/{bank}"


def workspace_lease(bank: int) -> Lease:
    # The poller refreshes it every cycle; the ttl only matters when beat is down.
    return Lease(get_redis(), f"gq:immersal:workspace:{get_settings().immersal_account}:{bank}",
                 get_settings().visibility_timeout + 120)


def waiting_phase(bank: int) -> str:
    return f"waiting for workspace {workspace_name(bank)}"


def queue_for_workspace(job_id: str, bank: int) -> None:
    r = get_redis()
    r.hset(state_key(job_id), mapping={"step": QUEUED, "step_at": time.time(), "bank": bank})
    get_ledger().transition(job_id, jobs.QUEUED, phase=waiting_phase(bank))
    workspace_lease(bank).wait(job_id)
    r.sadd(ACTIVE_KEY, job_id)
    hand_over(bank)


def may_release(holder: str) -> bool:
    """A finished job keeps its workspace until none of its chunks is mid-submission, so that no
    late image of it lands in the next job's workspace (or until a lost chunk is past hoping for)."""
    job = get_ledger().get(holder)
    if job is None:
        return True
    if not job.finished:
        return False
    return get_redis().scard(working_key(holder)) == 0 or time.time() - job.updated > grace_seconds()


def hand_over(bank: int) -> None:
    """Free the workspace of a finished holder, then give it to the oldest job waiting for it."""
    lease = workspace_lease(bank)
    holder = lease.holder()
    if holder is not None and may_release(holder):
        lease.release(holder)
    for waiter in lease.waiters():
        if not is_finished(waiter):
            break
        lease.leave(waiter)
    granted = lease.grant_next()
    if granted:
        start_on_workspace(granted, bank)


def start_on_workspace(job_id: str, bank: int) -> None:
    """The job holds the workspace now; it shows so while its start waits for a worker."""
    if move_step(job_id, START, QUEUED):
        get_ledger().transition(job_id, jobs.QUEUED, phase=f"starting on workspace {workspace_name(bank)}")
        send_step(job_id, START)


def free_workspace(job_id: str) -> None:
    bank = job_state(job_id).get("bank")
    if bank is not None:
        hand_over(int(bank))


def hold_workspace(job_id: str, bank: int) -> None:
    if not workspace_lease(bank).refresh(job_id):
        raise WorkspaceLost(f"the job lost its lease on workspace {workspace_name(bank)} (it expired); "
                            "its images may have been cleared by another job")


def fail_and_free(task, job_id: str, exc: BaseException) -> None:
    try:
        fail(task, job_id, exc)           # records the failure, raises JobFailed
    finally:
        free_workspace(job_id)


def retire(job_id: str) -> None:
    """A finished job leaves the poller's care; its per-image records expire with its ledger record."""
    r = get_redis()
    bank = r.hget(state_key(job_id), "bank")
    r.srem(ACTIVE_KEY, job_id)
    r.delete(chunks_key(job_id))
    for key in scratch_keys(job_id):
        r.expire(key, jobs.RECORD_TTL_SECONDS)
    if bank is not None:
        hand_over(int(bank))


# --- tasks that carry a job one step on ---
def step_task(name: str, step: str):
    """Register `fn(task, job)` as the task for `step`. It runs only while the job is at that step and
    one run at a time: a late duplicate (re-sent by the poller, redelivered) finds nothing to do."""

    def register(fn: Callable[[Any, Any], None]):
        def run(self, job_id: str) -> dict:
            job = get_ledger().get(job_id)
            if job is None or job.finished or job_state(job_id).get("step") != step:
                return {"job_id": job_id, "step": step, "skipped": True}
            busy, owner = Lease(get_redis(), busy_key(job_id), get_settings().task_time_limit), uuid.uuid4().hex
            if not busy.acquire(owner):
                return {"job_id": job_id, "step": step, "skipped": True}
            try:
                fn(self, job)
            except SoftTimeLimitExceeded:
                raise self.retry(countdown=1, max_retries=get_settings().max_retries)
            except TransientError as exc:
                retry_or_raise(self, exc)
                fail_and_free(self, job_id, exc)
            except (VendorError, JobError) as exc:
                fail_and_free(self, job_id, exc)
            finally:
                busy.release(owner)
            return {"job_id": job_id, "step": step}

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return app.task(bind=True, base=JobTask, name=name)(run)

    return register


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


def create_once(vendor: ImmersalClient, job_id: str, name: str, bank: int | None, call: Callable[[], dict]) -> int:
    """Run a map-creating call (/construct, /fuse) once: after a call cut off without an answer, the
    map it may have created is looked up in /list before calling again."""
    r = get_redis()
    began = r.hget(state_key(job_id), "construct_at")
    if began is not None:
        found = find_created_map(vendor, job_id, name, float(began), bank)
        if found is not None:
            return found
    r.hset(state_key(job_id), "construct_at", time.time())
    try:
        return int(call()["id"])
    except TransientError as exc:
        if exc.status is not None:    # answered: nothing was created
            r.hdel(state_key(job_id), "construct_at")
        raise
    except VendorError:
        r.hdel(state_key(job_id), "construct_at")
        raise


def find_created_map(vendor: ImmersalClient, job_id: str, name: str, since: float, bank: int | None) -> int | None:
    claims = get_redis()
    for entry in vendor.list_jobs(bank or 0):    # newest first
        if entry.get("name") != name or (bank is not None and int(entry.get("bank", bank)) != bank):
            continue
        if vendor_time(entry.get("created")) < since - CLOCK_SLACK_SECONDS:
            continue
        claimed = claims.hget(CLAIMS_KEY, str(entry["id"]))
        if claimed in (None, job_id):
            return int(entry["id"])
    return None


def vendor_time(value: Any) -> float:
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def record_map(job_id: str, map_id: int, summary: dict) -> None:
    """The map exists at Immersal: from now on the poller follows its construction."""
    r = get_redis()
    r.hsetnx(CLAIMS_KEY, str(map_id), job_id)
    r.hset(state_key(job_id), mapping={"map_id": map_id, "status": "pending", "summary": json.dumps(summary),
                                       "step": CONSTRUCTION, "step_at": time.time()})
    get_ledger().transition(job_id, jobs.WAITING, phase="construction: pending")
    r.sadd(ACTIVE_KEY, job_id)


# --- the poller: beat sends immersal.poll every few seconds ---
@app.task(bind=True, base=JobTask, name="immersal.poll", ignore_result=True)
def poll(self) -> dict:
    """Look after every job in progress: hand free workspaces on, keep leases alive, re-send steps
    whose message was lost, and check the construction of every map being built. Never sleeps."""
    lock, owner = Lease(get_redis(), POLL_LOCK_KEY, POLL_LOCK_SECONDS), uuid.uuid4().hex
    if not lock.acquire(owner):
        return {"skipped": "another poll is running"}
    try:
        return sweep(self)
    finally:
        lock.release(owner)


def sweep(task) -> dict:
    r, ledger = get_redis(), get_ledger()
    constructing, banks, resent = [], set(), 0
    for job_id in sorted(r.smembers(ACTIVE_KEY)):
        job, state = ledger.get(job_id), job_state(job_id)
        if job is None or job.finished:
            retire(job_id)
            continue
        step = state.get("step")
        if "bank" in state and step in WORKSPACE_STEPS:
            banks.add(int(state["bank"]))
        if step == CONSTRUCTION:
            constructing.append((job, state))
        elif step == QUEUED and workspace_lease(int(state["bank"])).holder() == job_id:
            start_on_workspace(job_id, int(state["bank"]))     # granted by a task that died before sending it
        elif step in (START, SUBMIT) and state.get("chunks") and ledger.finished_count(job_id) >= int(state["chunks"]):
            dispatch_step(job_id, SETTLE, START, SUBMIT)
        elif step in STEP_TASKS and time.time() - float(state.get("step_at") or 0) > grace_seconds():
            r.hset(state_key(job_id), "step_at", time.time())
            send_step(job_id, step)
            resent += 1
    for bank in banks:
        tend_workspace(bank)
    checked = check_constructions(task, constructing)
    return {"constructing": len(constructing), "checked": checked, "resent": resent}


def tend_workspace(bank: int) -> None:
    """Keep the holder's lease alive while it uses the workspace; free it once it does not."""
    lease = workspace_lease(bank)
    holder = lease.holder()
    if holder is not None and not is_finished(holder):
        if job_state(holder).get("step") in WORKSPACE_STEPS:
            lease.refresh(holder)
        else:
            lease.release(holder)
    hand_over(bank)


def check_constructions(task, constructing: list) -> int:
    """One /list per bank when several maps are being built there, else one /metadataget per map."""
    if not constructing:
        return 0
    vendor = client(timeout=POLL_CALL_TIMEOUT)
    by_bank: dict[int, list] = {}
    for job, state in constructing:
        by_bank.setdefault(int(state.get("bank") or 0), []).append((job, state))
    checked = 0
    for bank, group in by_bank.items():
        try:
            listed = {int(e["id"]): e for e in vendor.list_jobs(bank)} if len(group) > 1 else {}
        except TransientError as exc:
            log.info("immersal poll: /list of bank %s failed (%s); next round", bank, exc)
            continue
        for job, state in group:
            map_id = int(state["map_id"])
            try:
                entry = listed.get(map_id) or vendor.metadata(map_id)
                follow_construction(task, job, state, map_id, entry, vendor)
            except TransientError as exc:
                log.info("immersal poll: map %s status unknown (%s); next round", map_id, exc)
                continue
            except VendorError as exc:
                get_ledger().transition(job.id, jobs.FAILED, error=error_dict(exc))
            checked += 1
    return checked


def follow_construction(task, job, state: dict, map_id: int, entry: dict, vendor: ImmersalClient) -> None:
    status = entry["status"]
    if status != state.get("status"):
        get_redis().hset(state_key(job.id), "status", status)
        report(task, job.id, f"construction: {status}")
    if status in LOCALIZABLE:
        dispatch_step(job.id, DOWNLOAD, CONSTRUCTION)
    elif status == FAILED:
        errno = entry["errno"] if "errno" in entry else vendor.metadata(map_id).get("errno")  # /list has none
        error = ConstructionFailed(f"Immersal could not build map {map_id} ({entry.get('name', '')}): status {status}, "
                                   f"errno {errno}", map_id=map_id, vendor_message=status, errno=errno)
        get_ledger().transition(job.id, jobs.FAILED, error=error.to_dict())


@step_task("immersal.transfer.download", DOWNLOAD)
def download(task, job) -> None:
    """The map's .bytes from /mapb64, checked against Immersal's sha256_al, into S3."""
    state = job_state(job.id)
    map_id, name = int(state["map_id"]), job.params["name"]
    report(task, job.id, STEP_PHASES[DOWNLOAD])
    data = client().download_map(map_id)       # raises (and is retried) when the bytes miss sha256_al
    output = job.params.get("output")
    target = object_ref(output, "output") if output else S3Ref(get_settings().s3_bucket, f"immersal/{job.id}/{name}-{map_id}.bytes")
    get_store().write(target, data)
    result = {"map_id": map_id, "name": name, **json.loads(state.get("summary") or "{}"), "status": state.get("status"),
              "map": target.uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    get_ledger().transition(job.id, jobs.SUCCEEDED, result=result)
    retire(job.id)


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


# --- localization ---
@job_task(app, "immersal.localize")
def localize(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    """The camera pose of one image in one of up to 8 maps, or localized: false."""
    return localize_image(job, image, intrinsics, map_ids)


@job_task(app, "immersal.visual_gps")
def visual_gps(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    """Localize, then place the camera on the WGS84 ellipsoid through the map's ECEF transform."""
    pose = localize_image(job, image, intrinsics, map_ids)
    if not pose["localized"]:
        return pose
    job.progress("map to WGS84")
    try:
        ecef = client(account=False).ecef(pose["map_id"])
    except ImmersalNotFound as exc:
        raise JobError(f"map {pose['map_id']} has no ECEF transform (none of its images had GPS)",
                       field="map_ids", vendor_message=exc.code) from exc
    latitude, longitude, altitude = map_to_wgs84(pose["position"], ecef)
    return pose | {"latitude": float(latitude), "longitude": float(longitude), "altitude": float(altitude),
                   "ecef": ecef}


def localize_image(job: JobContext, image: str, intrinsics: Any, map_ids: list[int]) -> dict:
    ref = object_ref(image, "image")
    camera = check_intrinsics(intrinsics)
    ids = check_map_ids(map_ids, "map_ids", high=MAX_LOCALIZE_MAPS)
    store = get_store()
    check_image_object(store, ref, "image")
    job.progress("localizing")
    answer = client(account=False).localize(store.read(ref), ids, camera)
    if not answer.get("success"):
        return {"localized": False, "image": ref.uri, "map_ids": ids,
                "message": f"not localized: {ref} matched none of the maps {ids}"}
    return {"localized": True, "image": ref.uri, "map_id": int(answer["map"]),
            "position": [float(answer[k]) for k in POSITION_FIELDS],
            "rotation": [[float(answer[f"r{i}{j}"]) for j in range(3)] for i in range(3)]}


# --- map lists ---
@job_task(app, "immersal.maps_near")
def maps_near(job: JobContext, latitude: float, longitude: float, radius: float, bank: int = 0) -> dict:
    """The maps within `radius` metres of a WGS84 point (/geolist)."""
    latitude, longitude, radius = (check_number(v, k) for k, v in
                                   (("latitude", latitude), ("longitude", longitude), ("radius", radius)))
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidInput("latitude must be within -90..90 and longitude within -180..180 degrees", field="latitude")
    if radius <= 0:
        raise InvalidInput(f"radius: must be a positive number of metres, got {radius!r}", field="radius")
    check_whole(bank, "bank")
    found = [map_summary(e) for e in client().geolist(latitude, longitude, radius, bank)]
    return {"latitude": latitude, "longitude": longitude, "radius": radius, "count": len(found), "maps": found}


@job_task(app, "immersal.list_maps")
def list_maps(job: JobContext, bank: int = 0) -> dict:
    """All the account's maps (/list), newest first."""
    check_whole(bank, "bank")
    found = [map_summary(e) for e in client().list_jobs(bank)]
    return {"count": len(found), "maps": found}


def map_summary(entry: dict) -> dict:
    return {k: entry[k] for k in MAP_FIELDS if k in entry}
