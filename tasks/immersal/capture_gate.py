"""Exact captures: one /capture in flight per workspace, so that a call cut off without an answer is
settled by the workspace's count alone (job param `exact_captures`, GEOQUEUE_IMMERSAL_EXACT_CAPTURES).

Immersal's /status counts a workspace and cannot list it. Captures in parallel are faster, but one
killed worker can cut off several at once, and when the vendor refused some of them (a 5xx the dead
worker never read), the count says how many arrived, not which: submission.py then sends the
likeliest missing again and may send one that had arrived. Through the gate at most one capture is
in flight, its image noted as pending; whoever takes the gate next, or its own holder after a
cut-off, counts the workspace and records the pending image as arrived or forgets it. No image
that arrived is ever sent again. The cost is the speed of parallel submission (bench/README.md).
The holder checks its grant's fencing token (runtime/lease.py) before it notes a capture or settles
one: a holder whose gate went to another (its grant lost in a Redis failover) makes no call (GateLost).

    gq:immersal:capture-gate:<account>:<bank>            the holder's owner id; a holder alive keeps
                                                         renewing it, a dead one's expires in GATE_TTL
    gq:immersal:capture-gate:<account>:<bank>:pending    JSON {"job", "image"}: the capture under way
                                                         or cut off, until it is settled
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from config.redis_client import get_redis
from config.settings import get_settings
from geoqueue.ledger import RECORD_TTL_SECONDS
from runtime import JobContext, JobError
from runtime.lease import Lease
from tasks.immersal.records import STEPS, ImmersalRecords, log
from tasks.immersal.workspace import workspace_mismatch
from vendors.errors import TransientError
from vendors.immersal import ImmersalClient

GATE_TTL_SECONDS = 15.0    # a dead holder's gate frees after this, by when its last request is served
WAIT_SECONDS = 10.0        # longer than that the task tries again later (its time limit is near)
POLL_SECONDS = 0.005


class GateBusy(TransientError):
    """Another capture holds the workspace's gate for longer than a task should wait."""


class GateLost(TransientError):
    """The gate is no longer this holder's (a failover lost its grant, or it expired): no call is made."""


class CaptureGate:
    def __init__(self, bank: int, ttl_seconds: float = GATE_TTL_SECONDS, wait_seconds: float = WAIT_SECONDS) -> None:
        self.redis = get_redis()
        self.lease = Lease(self.redis, f"gq:immersal:capture-gate:{get_settings().immersal_account}:{bank}",
                           ttl_seconds)
        self.pending_key = f"{self.lease.name}:pending"
        self.renew_seconds, self.wait_seconds = ttl_seconds / 5, wait_seconds
        self.owner, self.token = uuid.uuid4().hex, 0      # token: the grant this holder has (0: none yet)

    @contextmanager
    def held(self, settle: Callable[[dict], None]) -> Iterator[CaptureGate]:
        """Hold the gate for the block; first `settle(pending)` what a holder before left unsettled."""
        self.take()
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(stop,), daemon=True, name="immersal-capture-gate")
        renewer.start()
        try:
            left = self.pending()
            if left is not None:
                self.check()
                settle(left)
                self.settled()
            yield self
        finally:
            stop.set()
            renewer.join()
            self.lease.release(self.owner, self.token)

    def check(self) -> None:
        """Before a call made under the gate: it is still held, by this holder's grant."""
        if not self.lease.refresh(self.owner, self.token):
            raise GateLost(f"the workspace's capture gate ({self.lease.name}) is no longer this holder's",
                           vendor="immersal", retry_after=1.0)

    def pending(self) -> dict | None:
        raw = self.redis.get(self.pending_key)
        return json.loads(raw) if raw else None

    def capturing(self, job_id: str, image: str) -> None:
        """The capture of `image` is about to be made (or looked up): pending until settled."""
        self.check()
        self.redis.set(self.pending_key, json.dumps({"job": job_id, "image": image}), ex=RECORD_TTL_SECONDS)

    def settled(self) -> None:
        self.redis.delete(self.pending_key)

    def take(self) -> None:
        """Take the gate, waiting up to `wait_seconds` for it (GateBusy after that)."""
        deadline = time.monotonic() + self.wait_seconds
        while not (token := self.lease.acquire(self.owner)):
            if time.monotonic() > deadline:
                left = max(self.redis.pttl(self.lease.name), 0) / 1000
                raise GateBusy(f"another capture holds the workspace's gate ({self.lease.name})",
                               vendor="immersal", retry_after=left + 1)
            time.sleep(POLL_SECONDS)
        self.token = token

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.renew_seconds):
            try:
                if not self.lease.refresh(self.owner, self.token):
                    log.warning("capture gate %s expired under its holder (Redis away?)", self.lease.name)
                    return
            except Exception as exc:       # Redis away: try again at the next renewal
                log.warning("capture gate %s not renewed: %s", self.lease.name, exc)


def exact_captures(job: JobContext) -> bool:
    exact = job.params.get("exact_captures")
    return get_settings().immersal_exact_captures if exact is None else bool(exact)


def settle_pending(job: JobContext, vendor: ImmersalClient, bank: int, pending: dict) -> None:
    """The capture an exact job's gate holder left pending: answered, there is nothing to settle; cut
    off, the workspace's count (every other image of the job recorded) says whether it arrived."""
    if pending["job"] != job.id:
        return                  # an earlier job's, whose images the workspace no longer holds
    records = ImmersalRecords(job.id)
    entry = records.captures.entry(pending["image"])
    if entry is None or "result" in entry:
        return
    # Let the vendor finish serving a request that may have reached it just before the cut-off.
    time.sleep(max(0.0, float(entry.get("cut", entry["at"])) + GATE_TTL_SECONDS - time.time()))
    base, confirmed = int(STEPS.state(job.id)["base"]), records.captures.done()
    count = int(vendor.status(bank).get("imageCount", 0))
    if count == base + confirmed + 1:
        records.captures.record(pending["image"], True)
        outcome = "cut_off_arrived"
    elif count == base + confirmed:
        records.captures.forget(pending["image"])      # not there: its chunk sends it again
        outcome = "cut_off_sent_again"
    else:
        raise JobError(workspace_mismatch(bank, count, base, confirmed))
    get_redis().hincrby(STEPS.key(job.id), outcome, 1)
    log.info("job %s: a cut-off capture of image %s %s", job.id, pending["image"],
             "had arrived" if outcome == "cut_off_arrived" else "had not arrived; it goes again")


def exact_cut_offs(state: dict) -> dict:
    """The cut-off captures an exact build's gate settled, as the result shows cut-off calls."""
    arrived, sent_again = int(state.get("cut_off_arrived", 0)), int(state.get("cut_off_sent_again", 0))
    if not arrived + sent_again:
        return {}
    return {"cut_off_calls": {"count": arrived + sent_again, "arrived": arrived, "sent_again": sent_again}}
