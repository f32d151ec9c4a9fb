"""Submitting a map's images: the workspace prepared, chunks of images sent once each, the calls
cut off without an answer settled, then the construct call.

Exactly once per (run, index): each capture is one of the job's effects (runtime/once.py), marked
just before its call and recorded as soon as Immersal answers. A redelivered chunk skips what was
recorded and never repeats a call that was cut off (worker killed, timeout). Immersal cannot list a
workspace, but /status counts it: with every other image confirmed, settle learns how many cut-off
calls arrived. All: nothing is sent again. None: each is sent once. Some: each marker notes when its
request left the worker whole (several chunks capture at once, so the order of the marks says
nothing), and a call cut off before that never reached Immersal; those are sent again first, then,
should the count say more are missing, the calls that left but may have been refused, one at a time
with a count after each. Only then can an image that had arrived be sent twice (Immersal replaces
an image sent with the same run and index; the result says so). An exact build (`exact_captures`)
takes that chance away at the cost of parallel captures: one capture at a time per workspace
(capture_gate.py), each cut-off one settled by the count alone.
"""
from __future__ import annotations

import time
from typing import Any

from config.settings import get_settings
from geoqueue.job_record import RUNNING
from geoqueue.s3ref import S3Ref
from runtime import CutOff, InvalidInput, JobContext, JobError, Once, ending
from runtime.fanout import Fanout
from runtime.steps import is_finished
from services.storage import get_store, prefix_ref
from tasks.immersal.account import client
from tasks.immersal.capture_gate import CaptureGate, exact_captures, exact_cut_offs, settle_pending
from tasks.immersal.construction import create_map_once, record_map
from tasks.immersal.records import (
    CHUNK_TASK,
    CONSTRUCT,
    SETTLE,
    START,
    STEP_PHASES,
    STEPS,
    SUBMIT,
    ImmersalRecords,
    image_key,
    log,
)
from tasks.immersal.workspace import free_workspace, hold_workspace, lease_token, workspace_lease, workspace_mismatch
from vendors.immersal import ImmersalClient

PROGRESS_SECONDS = 1.0   # a chunk shows the images submitted at most this often; the end of each chunk shows it too
EXACT_PARALLEL = 2       # an exact build captures one image at a time: one chunk reads its next while another sends


def start(job: JobContext, state: dict) -> None:
    """The workspace is this job's now: a restore job restores; a build prepares and fans out its chunks."""
    bank = int(state["bank"])
    hold_workspace(job.id, bank, lease_token(state))
    if job.name == "immersal.restore":
        restore_into_workspace(job, bank)
    else:
        prepare_and_submit(job, bank, int(state["images"]))


def prepare_and_submit(job: JobContext, bank: int, total: int) -> None:
    records, fanout = ImmersalRecords(job.id), Fanout()
    # Until the fan-out has begun no image is sent, so emptying the workspace again is safe.
    if not fanout.started(job.id):
        job.show(RUNNING, STEP_PHASES[START])
        vendor = client()
        vendor.clear(anchor=True, bank=bank)
        for map_id in job.params.get("extend") or []:
            vendor.restore(map_id, clear=False)
        status = vendor.status(bank)
        base, limit = int(status.get("imageCount", 0)), int(status.get("imageMax", 0))
        if base + total > limit:
            raise InvalidInput(f"images: the workspace holds {base} restored images; {total} more exceed "
                               f"its imageMax of {limit}", field="images")
        STEPS.set(job.id, base=base)
        job.show(RUNNING, STEP_PHASES[SUBMIT], done=0, total=total)
        parallel = job.params.get("max_parallel") or (
            EXACT_PARALLEL if exact_captures(job) else get_settings().immersal_max_parallel)
        fanout.start(job.id, records.chunk_names(), CHUNK_TASK, parallel)
    show_submission(job)
    STEPS.move(job.id, SUBMIT, START)


def show_submission(job: JobContext) -> None:
    """The fan-out counts chunks; the job shows the images submitted, of all its images."""
    job.progress(STEP_PHASES[SUBMIT], ImmersalRecords(job.id).captures.done(), int(STEPS.state(job.id)["images"]))


def submit_chunk(job: JobContext, item: str) -> dict[str, Any]:
    """Submit one chunk's images, one at a time (bounded memory); safe to run again."""
    records = ImmersalRecords(job.id)
    records.working(item, True)
    try:
        return submit_images(job, records, item)
    finally:
        records.working(item, False)
        if is_finished(job.id):
            free_workspace(job.id)   # it waited for this chunk before the next job may clear it


def submit_images(job: JobContext, records: ImmersalRecords, item: str) -> dict[str, Any]:
    state = STEPS.state(job.id)
    bank, token = int(state["bank"]), lease_token(state)
    vendor, cut_off = client(), 0
    rows, shown = records.chunk(item), time.monotonic()
    for row in rows:
        job.check_canceled()
        hold_workspace(job.id, bank, token)
        try:
            capture_once(job, records, vendor, row, bank)
        except CutOff:
            cut_off += 1              # an earlier attempt's call may have reached Immersal: settle decides
            continue
        if time.monotonic() - shown >= PROGRESS_SECONDS:
            job.progress(STEP_PHASES[SUBMIT], records.captures.done())
            shown = time.monotonic()
    return {"images": len(rows), "cut_off_calls": cut_off}


def capture_once(job: JobContext, records: ImmersalRecords, vendor: ImmersalClient, row: dict, bank: int) -> None:
    """One /capture of a manifest row's image, made once (CutOff when an earlier call was cut off)."""
    image, key, exact = input_image(job, row), image_key(row), exact_captures(job)

    def capture() -> bool:
        vendor.capture(get_store().read(image, "images"), run=row["run"], index=row["index"],
                       position=row["position"], rotation=row["rotation"], intrinsics=row["intrinsics"],
                       gps=row["gps"], anchor=row["anchor"], bank=bank, retry_cut_off=not exact,
                       in_flight=lambda sent: records.captures.in_flight(key, sent))
        return True

    if not exact:
        records.captures.run(key, capture)
        return
    with CaptureGate(bank).held(lambda left: settle_pending(job, vendor, bank, left)) as gate:
        gate.capturing(job.id, key)
        try:
            records.captures.run(key, capture)
        finally:
            gate.check()        # lost: what it left pending is the next holder's to settle
            settle_pending(job, vendor, bank, {"job": job.id, "image": key})
            gate.settled()


def chunks_done(job: JobContext) -> None:
    STEPS.dispatch(job.id, SETTLE, START, SUBMIT)


def settle(job: JobContext, state: dict) -> None:
    """Every chunk is done: make sure the workspace holds exactly this job's images, then construct."""
    bank, images, token = int(state["bank"]), int(state["images"]), lease_token(state)
    hold_workspace(job.id, bank, token)
    vendor = client()
    summary: dict[str, Any] = {"images": images, "bank": bank}
    if job.params.get("extend"):
        summary["extended"] = job.params["extend"]
    if not map_being_created(job.id):
        Fanout().close(job.id)     # every chunk has its outcome
        job.progress("checking workspace")
        if exact_captures(job):
            with CaptureGate(bank).held(lambda left: settle_pending(job, vendor, bank, left)):
                pass               # the last capture a worker was killed in is settled
            summary |= exact_cut_offs(STEPS.state(job.id))
        summary |= resolve_cut_off_calls(job, vendor, int(state["base"]), bank, token)
        count = int(vendor.status(bank).get("imageCount", 0))
        if count != int(state["base"]) + images:
            raise JobError(workspace_mismatch(bank, count, int(state["base"]), images))
    job.progress(STEP_PHASES[SETTLE], ImmersalRecords(job.id).captures.done(), images)
    options = job.params.get("options") or {}
    hold_workspace(job.id, bank, token)
    map_id = create_map_once(job, vendor, bank, lambda: vendor.construct(
        job.params["name"], window_size=job.params.get("window_size") or 0, bank=bank, **options))
    record_map(job, map_id, summary)
    workspace_lease(bank).release(job.id, token)
    free_workspace(job.id)


def map_being_created(job_id: str) -> bool:
    return Once(job_id).entry(CONSTRUCT) is not None


def resolve_cut_off_calls(job: JobContext, vendor: ImmersalClient, base: int, bank: int, token: int | None) -> dict:
    """Calls cut off without an answer (a worker died, a timeout): /status counts the workspace (Immersal
    cannot list it), and with every other image confirmed the difference is how many of them arrived."""
    records = ImmersalRecords(job.id)
    cut = records.captures.markers()
    if not cut:
        return {}
    confirmed = records.captures.done()
    count = int(vendor.status(bank).get("imageCount", 0))
    arrived = count - base - confirmed
    if not 0 <= arrived <= len(cut):
        raise JobError(workspace_mismatch(bank, count, base, confirmed))
    # A call whose request never left (or was refused, then cut off waiting to try again) did not arrive;
    # one that left may still have been refused (a 5xx its worker did not live to read), the newest
    # likeliest. Only the count tells, so the likeliest missing are sent one at a time, counting after
    # each, until the workspace holds them all.
    likeliest_missing = sorted(cut, key=lambda key: ("sent" in cut[key], -int(cut[key]["seq"])))
    complete, sent_again = base + confirmed + len(cut), 0
    for key in likeliest_missing:
        if count == complete:
            break
        hold_workspace(job.id, bank, token)
        send_again(job, records, vendor, [key], bank)
        sent_again += 1
        count = int(vendor.status(bank).get("imageCount", 0))
    if count != complete:
        raise JobError(workspace_mismatch(bank, count, base, confirmed + len(cut)))
    for key in likeliest_missing[sent_again:]:
        records.captures.record(key, True)
    if sent_again > len(cut) - arrived:
        # Immersal replaced an image sent with the same run and index; the result says so.
        log.warning("job %s: %d cut-off image submissions were sent again where %d had not arrived",
                    job.id, sent_again, len(cut) - arrived)
    return {"cut_off_calls": {"count": len(cut), "arrived": arrived, "sent_again": sent_again}}


def send_again(job: JobContext, records: ImmersalRecords, vendor: ImmersalClient, keys: list[str], bank: int) -> None:
    wanted = set(keys)
    for row in records.rows():
        if image_key(row) in wanted:
            records.captures.forget(image_key(row))
            capture_once(job, records, vendor, row, bank)


def restore_into_workspace(job: JobContext, bank: int) -> None:
    map_id, clear = job.params["map_id"], job.params.get("clear", True)
    job.progress(f"restoring map {map_id}")
    vendor = client()
    vendor.restore(map_id, clear=clear is not False)
    count = int(vendor.status(bank).get("imageCount", 0))
    ending.succeed(job.id, {"map_id": map_id, "bank": bank, "cleared": clear is not False, "workspace_images": count})


def input_image(job: JobContext, row: dict) -> S3Ref:
    return prefix_ref(job.params["images"], "images").child(row["file"])
