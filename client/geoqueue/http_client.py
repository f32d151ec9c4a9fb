"""The client over the HTTP API, for an app that should not hold the fleet's Redis:
`GeoQueue("https://geoqueue.internal", api_key=...)` (or $GEOQUEUE_API_KEY) acts as the key's app,
with the calls of the Redis form: submit, status, wait, watch, items, console, list and cancel.
wait() and watch() follow the job's server-sent events (/v1/jobs/{id}/events). Standard library only.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from geoqueue.client import LIST_LIMIT, RECHECK_SECONDS, Follows, JobConflict, SubmitFailed, UnknownJob, check_vendor
from geoqueue.job_record import Job, check_job_id, new_job_id
from geoqueue.params import InvalidParams

PAGE_LIMIT = 200            # the API's largest page


class ApiRefused(Exception):
    """The API refused a call for a reason no other exception names (401, 403, 5xx, ...)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail = status, error, detail


class HttpQueue(Follows):
    """A handle on the fleet through its HTTP API, as the app of its key."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key or os.environ.get("GEOQUEUE_API_KEY")
        if not self.api_key:
            raise ValueError("the HTTP API needs a key: GeoQueue(url, api_key=...) or $GEOQUEUE_API_KEY")
        self.timeout = timeout

    # --- one call ---
    def _open(self, method: str, path: str, body: dict | None = None, timeout: float | None = None,
              accept: str = "application/json"):
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Accept": accept,
                     **({"Content-Type": "application/json"} if body is not None else {})})
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as refused:
            raise self._refusal(refused, path) from None

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        with self._open(method, path, body) as response:
            return json.loads(response.read() or b"null")

    @staticmethod
    def _refusal(refused: urllib.error.HTTPError, path: str) -> Exception:
        """The API's refusal ({error, detail, field}) as the Redis form raises it."""
        try:
            problem = json.loads(refused.read() or b"{}")
        except ValueError:
            problem = {}
        error, detail, field = problem.get("error", ""), problem.get("detail", refused.reason), problem.get("field")
        if refused.code == 404 and error == "UnknownJob":
            return UnknownJob(urllib.parse.unquote(path.split("/")[3]))
        if refused.code == 409 and error == "JobConflict":
            return JobConflict(detail, field=field)
        if refused.code == 422:
            return InvalidParams(detail, field=field)
        return ApiRefused(refused.code, error, detail)

    @staticmethod
    def _job_path(job_id: str, rest: str = "") -> str:
        return f"/v1/jobs/{urllib.parse.quote(str(job_id), safe='')}{rest}"

    # --- the calls ---
    def submit(self, name: str, params: dict[str, Any] | None = None, job_id: str | None = None,
               callback_url: str | None = None) -> str:
        """Enqueue a job by its name; returns its id. The id is chosen here when not given, so that a
        submit whose answer was lost can be sent again as the same job (SubmitFailed names it)."""
        job_id = new_job_id() if job_id is None else check_job_id(job_id)
        body = {"name": name, "params": dict(params) if isinstance(params, Mapping) else params or {},
                "job_id": job_id, **({"callback_url": callback_url} if callback_url is not None else {})}
        try:
            return self._call("POST", "/v1/jobs", body)["id"]
        except (urllib.error.URLError, OSError) as exc:  # no answer: the job may or may not be recorded
            raise SubmitFailed(job_id, exc) from exc

    def status(self, job_id: str) -> Job:
        return Job.from_dict(self._call("GET", self._job_path(job_id)))

    def items(self, job_id: str) -> dict[str, dict]:
        return self._call("GET", self._job_path(job_id, "/items"))["items"]

    def console(self, job_id: str, start: int = 0) -> list[str]:
        return self._call("GET", self._job_path(job_id, f"/console?start={int(start)}"))["lines"]

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        return self._call("GET", self._job_path(job_id))["webhook_deliveries"] or []

    def page(self, limit: int = 50, state: str | None = None, vendor: str | None = None,
             cursor: str | None = None) -> tuple[list[Job], str | None]:
        query = {"limit": limit, "state": state, "vendor": vendor, "cursor": cursor}
        found = self._call("GET", "/v1/jobs?" + urllib.parse.urlencode({k: v for k, v in query.items() if v}))
        return [Job.from_dict(job) for job in found["jobs"]], found["next_cursor"]

    def list(self, limit: int = 50, state: str | None = None, vendor: str | None = None) -> list[Job]:
        """The app's jobs, newest first, read a page of at most 200 at a time."""
        LIST_LIMIT.check(limit, "limit")
        check_vendor(vendor)
        jobs: list[Job] = []
        cursor: str | None = None
        while len(jobs) < limit:
            found, cursor = self.page(min(PAGE_LIMIT, limit - len(jobs)), state, vendor, cursor)
            jobs += found
            if not cursor:
                break
        return jobs

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished; False when it had already ended."""
        try:
            self._call("DELETE", self._job_path(job_id))
        except ApiRefused as refused:
            if refused.status == 409 and refused.error == "AlreadyEnded":
                return False
            raise
        return True

    # --- following a job ---
    def changes(self, job_id: str, timeout: float | None = None, recheck: float = RECHECK_SECONDS) -> Iterator[Job]:
        """The job now, then again at each change its event stream tells, until it finishes or
        `timeout` seconds pass. A dropped or silent stream is opened again (each opens with the job
        as it is then, so nothing is missed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.status(job_id)
        yield job
        while not job.finished:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            # The API pings every 15 s: a read this long without even a ping is a stream to open again.
            wait = max(0.1, min(recheck + 15, left if left is not None else recheck + 15))
            try:
                for event in self._events(job_id, wait, deadline):
                    changed = job.with_event(event)
                    if changed.finished:
                        changed = self.status(job_id)  # the whole record: result, error
                    if changed != job:
                        job = changed
                        yield job
                    if job.finished:
                        return
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                pass
            fresh = self.status(job_id)
            if fresh != job:
                job = fresh
                yield job

    def _events(self, job_id: str, read_timeout: float, deadline: float | None) -> Iterator[dict]:
        """The data of each `state` and `progress` event of the job's stream, until it ends or the deadline."""
        with self._open("GET", self._job_path(job_id, "/events"), timeout=read_timeout,
                        accept="text/event-stream") as stream:
            kind = None
            for raw in stream:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[len("event:"):].strip()
                elif line.startswith("data:") and kind in ("state", "progress"):
                    yield json.loads(line[len("data:"):].strip())
                elif not line:
                    kind = None
                if deadline is not None and time.monotonic() > deadline:
                    return
