"""What a producer app calls: submit, status, wait, list, cancel. Needs only celery and redis.

Over Redis (`GeoQueue("redis://...")`) the client holds the fleet's broker and ledger: that is the
fleet's own access, for trusted code (README, "Several apps on one fleet"). It acts as one app
(`app=`, default `default`) only in what it submits and finds by id. An app that should not hold
Redis passes the HTTP API's URL and a key instead (`GeoQueue("https://...", api_key=...)`,
geoqueue/http_client.py): the same calls, as the key's app."""
from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery

from geoqueue.callback_url import check_callback_url
from geoqueue.catalog import CATALOG
from geoqueue.job_record import (
    CANCELED,
    DEFAULT_APP,
    SUCCEEDED,
    Job,
    canonical,
    check_app,
    check_job_id,
    is_own_id,
    new_job_id,
    stored_id,
)
from geoqueue.ledger import CONFLICT, CREATED, Ledger
from geoqueue.ledger_keys import event_channel
from geoqueue.params import InvalidParams, Whole
from geoqueue.redis_url import DEFAULT_MASTER, connect, is_sentinel
from geoqueue.routes import RELEASE_TASK, queue_for

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# wait() and watch() wake on the job's published events; they also read the record this often in
# case an event was lost with a dropped connection (pub/sub does not replay).
RECHECK_SECONDS = 15.0


class JobFailed(Exception):
    """wait() found the job failed or canceled; `.job` holds its record and typed error."""

    def __init__(self, job: Job) -> None:
        error = job.error or {}
        super().__init__(f"job {job.id} {job.state}: {error.get('message', '')}".rstrip(": "))
        self.job = job


class WaitTimeout(TimeoutError):
    pass


class UnknownJob(KeyError):
    pass


class SubmitFailed(Exception):
    """The job is recorded but its message could not reach the broker. Submit again with the same
    `job_id` (it is then sent), or let the fleet's sweeper send it once the broker is back."""

    def __init__(self, job_id: str, cause: BaseException) -> None:
        super().__init__(f"job {job_id} is recorded but could not be sent ({type(cause).__name__}: {cause}); "
                         f"submit it again with job_id={job_id!r}")
        self.job_id = job_id


class JobConflict(InvalidParams):
    """The job id given names another job already (another name, or other parameters)."""


LIST_LIMIT = Whole(minimum=1)
VENDORS = tuple(sorted({spec.vendor for spec in CATALOG.specs.values()}))


def check_vendor(vendor: str | None) -> None:
    if vendor is not None and vendor not in VENDORS:
        raise InvalidParams(f"vendor: {vendor!r} is not a vendor; the vendors are: {', '.join(VENDORS)}",
                            field="vendor")


class Follows:
    """wait() and watch() of a handle on the fleet, from its changes(): the job now, then at each change."""

    def changes(self, job_id: str, timeout: float | None = None, recheck: float = RECHECK_SECONDS) -> Iterator[Job]:
        raise NotImplementedError

    def wait(self, job_id: str, timeout: float = 600, poll: float = RECHECK_SECONDS,
             raise_on_failure: bool = True) -> Job:
        """The job's record once it has finished. `poll` is only the safety re-read of the record:
        the job's events end the wait as soon as it finishes."""
        *_, job = self.changes(job_id, timeout=timeout, recheck=poll)   # the last record seen
        if not job.finished:
            raise WaitTimeout(f"job {job_id} still {job.state} after {timeout:g}s")
        if raise_on_failure and job.state != SUCCEEDED:
            raise JobFailed(job)
        return job

    def watch(self, job_id: str, poll: float = RECHECK_SECONDS) -> Iterator[Job]:
        """Yields the job each time it changes, until it finishes."""
        return self.changes(job_id, recheck=poll)


class GeoQueue(Follows):
    """A handle on the fleet through its Redis, acting as one app; or, given the HTTP API's URL,
    through the API as the key's app.

    >>> q = GeoQueue("redis://redis:6379/0", app="app-a")
    >>> job_id = q.submit("immersity.disparity", {"image": "s3://photos/cat.jpg"})
    >>> q.wait(job_id, timeout=600).result
    >>> GeoQueue("https://geoqueue.internal", api_key=key).status(job_id)
    """

    def __new__(cls, url: str | None = None, *args: Any, **kwargs: Any):
        if cls is GeoQueue and isinstance(url, str) and url.startswith(("http://", "https://")):
            from geoqueue.http_client import HttpQueue

            return HttpQueue(url, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, redis_url: str | None = None, sentinel_master: str | None = None,
                 app: str | None = None) -> None:
        self.app = check_app(app or os.environ.get("GEOQUEUE_APP") or DEFAULT_APP)
        self.redis_url = redis_url or os.environ.get("GEOQUEUE_REDIS_URL", DEFAULT_REDIS_URL)
        master = sentinel_master or os.environ.get("GEOQUEUE_REDIS_SENTINEL_MASTER", DEFAULT_MASTER)
        self.redis = connect(self.redis_url, master, decode_responses=True)
        self.ledger = Ledger(self.redis)
        # Only a sender: it needs the broker, never the workers' code.
        self.celery = Celery("geoqueue-producer", broker=self.redis_url, backend=self.redis_url)
        self.celery.conf.task_serializer = "json"
        if is_sentinel(self.redis_url):
            self.celery.conf.broker_transport_options = {"master_name": master}
            self.celery.conf.result_backend_transport_options = {"master_name": master}

    def as_app(self, app: str) -> GeoQueue:
        """The same connections, acting as another app (the HTTP API: one per caller's key)."""
        other = copy.copy(self)
        other.app = check_app(app)
        return other

    def stored(self, job_id: str) -> str:
        """The fleet's id of this app's job `job_id`; UnknownJob when it cannot be one of its ids."""
        if not is_own_id(job_id):
            raise UnknownJob(job_id)
        return stored_id(self.app, job_id)

    def submit(self, name: str, params: dict[str, Any] | None = None, job_id: str | None = None,
               callback_url: str | None = None) -> str:
        """Enqueue a job by its name; returns the job id (this app's own). Nothing is enqueued unless
        the job and its parameters are right (InvalidParams names the field). The job records and sends its parameters
        as the catalog normalizes them. Submitting an id again with the same name and (normalized)
        parameters is the same job; with others it is refused (JobConflict).
        `callback_url` receives the job's record, signed, when it ends (see the fleet's webhooks)."""
        given = {} if params is None else dict(params) if isinstance(params, Mapping) else params
        checked = CATALOG[name].check(given)
        job_id = new_job_id() if job_id is None else check_job_id(job_id)
        if callback_url is not None:
            check_callback_url(callback_url)
        # The catalog's normalized parameters (a lone map id as a list of one, ...) are what the job
        # is: recorded, compared on a submit again, and sent, so workers receive them as checked.
        stored = stored_id(self.app, job_id)
        created = self.ledger.create(stored, name, checked, callback_url=callback_url)
        if created == CONFLICT:  # the id is this app's: the other job is its own
            other = self.status(job_id)
            raise JobConflict(f"job_id: {job_id} is already a {other.name} job with other parameters "
                              f"({canonical(other.params)})", field="job_id")
        if created == CREATED or not self.ledger.sent(stored):
            try:
                self.celery.send_task(name, kwargs=checked, task_id=stored, queue=queue_for(name))
            except Exception as exc:  # the broker, not the job: the record stays, to be sent again
                raise SubmitFailed(job_id, exc) from exc
            self.ledger.mark_sent(stored)
        return job_id

    def status(self, job_id: str) -> Job:
        """This app's job `job_id` (UnknownJob when it has none: another app's job is not found)."""
        job = self.ledger.get(self.stored(job_id))
        if job is None:
            raise UnknownJob(job_id)
        return job.seen_by_its_app()

    def items(self, job_id: str) -> dict[str, dict]:
        """Per-item outcomes of a batch job (UnknownJob when there is no such job)."""
        self.status(job_id)
        return self.ledger.items(self.stored(job_id))

    def console(self, job_id: str, start: int = 0) -> list[str]:
        return self.ledger.console(self.stored(job_id), start)

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook delivery attempts."""
        return self.ledger.deliveries(self.stored(job_id))

    def changes(self, job_id: str, timeout: float | None = None, recheck: float = RECHECK_SECONDS) -> Iterator[Job]:
        """The job now, then again at each change it publishes, until it finishes or `timeout`
        seconds pass. Waiting costs no Redis command: the job's events wake it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.redis.pubsub(ignore_subscribe_messages=True) as events:
            events.subscribe(event_channel(self.stored(job_id)))
            job = self.status(job_id)  # read after subscribing, so no change falls in between
            yield job
            while not job.finished:
                left = recheck if deadline is None else min(recheck, deadline - time.monotonic())
                if left <= 0:
                    return
                message = events.get_message(timeout=left)
                if message is None:
                    fresh = self.status(job_id)
                    if fresh.updated == job.updated:
                        continue
                    job = fresh
                else:
                    job = job.with_event(json.loads(message["data"]))
                    if job.finished:
                        job = self.status(job_id)  # the whole record: result, error
                yield job

    def list(self, limit: int = 50, state: str | None = None, vendor: str | None = None) -> list[Job]:
        """This app's jobs, newest first; an unknown state or vendor, or a limit below 1, is refused
        (InvalidParams)."""
        return self.page(limit, state=state, vendor=vendor)[0]

    def page(self, limit: int = 50, state: str | None = None, vendor: str | None = None,
             cursor: str | None = None) -> tuple[list[Job], str | None]:
        """A page of list(), and the cursor of the next page (None at the end)."""
        LIST_LIMIT.check(limit, "limit")
        check_vendor(vendor)
        found, next_cursor = self.ledger.page(limit, state=state, vendor=vendor, cursor=cursor, app=self.app)
        return [job.seen_by_its_app() for job in found], next_cursor

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished. Running work notices at its next step;
        vendors with a cancel call (DroneMapper) are told by their poller."""
        self.status(job_id)
        stored = self.stored(job_id)
        canceled = self.ledger.transition(stored, CANCELED,
                                          error={"type": "Canceled", "message": "canceled by request"})
        if canceled:
            self.celery.control.revoke(stored)
            # What the job held (credit reservations, a workspace) goes now, not at the next sweep.
            self.celery.send_task(RELEASE_TASK, kwargs={"job_id": stored}, queue=queue_for(RELEASE_TASK))
        return canceled
