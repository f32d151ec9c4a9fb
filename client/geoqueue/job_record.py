"""A job's record as producers and workers read it: its states, its id, its app, its stored parameters
and the `Job` it reads back as. Where records live in Redis: geoqueue/ledger_keys.py.

Apps are the producers that share one fleet. Every job belongs to one app, and a job id is the app's
own: two apps may both submit `order-4711` and get two jobs. The ledger, Celery and the workers know a
job by its stored id, made from the app and the app's id:

    app `default`   the id itself                     order-4711
    any other app   <app>.<id>                        app-a.order-4711

App names and job ids are letters, digits, '-' and '_', never '.', so a stored id holds at most one
'.', and splitting at it gives back the one (app, id) it was made from: two apps' ids never meet, and
a default app's id (no '.') is never another app's. An id that an app gives and that reads as another
app's stored id names no job of it: another app's job is out of its reach, as if it did not exist.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from geoqueue.callback_url import shown_url
from geoqueue.params import InvalidParams

QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, CANCELED = (
    "queued", "running", "waiting", "succeeded", "failed", "canceled")
STATES = (QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, CANCELED)
TERMINAL = (SUCCEEDED, FAILED, CANCELED)
# Job ids name Redis keys and output objects: letters, digits, '-' and '_' only, never a path.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_APP = "default"   # the app of a client that names none (GeoQueue over Redis, the CLI)
APP = re.compile(r"[A-Za-z0-9_-]{1,64}")
STORED_ID = re.compile(rf"(?:{APP.pattern}\.)?{JOB_ID.pattern}")


def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: object) -> str:
    """A caller-chosen job id, refused unless it is 1 to 64 letters, digits, '-' or '_'."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise InvalidParams(f"job_id: {job_id!r} is not a job id: 1 to 64 letters, digits, '-' or '_'", field="job_id")
    return job_id


def check_stored_id(job_id: object) -> str:
    """A stored id (a task's id), refused unless it is an app's job id, prefixed by its app's name and
    '.' for any app but the default one."""
    if not isinstance(job_id, str) or not STORED_ID.fullmatch(job_id):
        raise InvalidParams(f"job_id: {job_id!r} is not a job id: 1 to 64 letters, digits, '-' or '_', after "
                            "its app's name and '.' for any app but the default one", field="job_id")
    return job_id


def check_app(app: object) -> str:
    if not isinstance(app, str) or not APP.fullmatch(app):
        raise InvalidParams(f"app: {app!r} is not an app name: 1 to 64 letters, digits, '-' or '_'", field="app")
    return app


def is_own_id(job_id: object) -> bool:
    """Whether this id may be an app's own: never one that reads as another app's stored id (an app's
    name and a '.' before the rest), which would reach that app's job."""
    return isinstance(job_id, str) and app_of(job_id) == DEFAULT_APP


def stored_id(app: str, job_id: str) -> str:
    """The id the fleet keeps for the app's job `job_id`."""
    return job_id if app == DEFAULT_APP else f"{app}.{job_id}"


def app_of(stored: str) -> str:
    """The app of a stored id: what comes before its '.', if anything (ledger_scripts.py reads it alike)."""
    app, dot, _ = stored.partition(".")
    return app if dot and app else DEFAULT_APP


def own_id(stored: str) -> str:
    """The id the job's app gave it (or was given for it)."""
    app, dot, rest = stored.partition(".")
    return rest if dot and app else stored


def event_seen_by(app: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """A job's published event (a summary, under its stored id) as `app` sees it: under the app's
    own id; None when the job is another app's."""
    stored = str(event.get("id", ""))
    return event | {"id": own_id(stored)} if app_of(stored) == app else None


def check_state(state: object) -> str:
    if state not in STATES:
        raise InvalidParams(f"state: {state!r} is not a job state; the states are: {', '.join(STATES)}", field="state")
    return state  # type: ignore[return-value]


def canonical(params: dict) -> str:
    """Parameters as stored: the same parameters always give the same text."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass
class Job:
    id: str
    name: str
    state: str
    vendor: str = ""
    phase: str = ""
    done: int = 0
    total: int = 0
    params: dict = field(default_factory=dict)
    result: Any = None
    error: dict | None = None
    created: float = 0.0
    updated: float = 0.0
    credits: int = 0
    callback_url: str = ""
    app: str = DEFAULT_APP

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Job:
        def loads(key: str, default: Any) -> Any:
            return json.loads(data[key]) if data.get(key) else default

        return cls(
            id=data["id"], name=data.get("name", ""), state=data.get("state", QUEUED),
            vendor=data.get("vendor", ""), phase=data.get("phase", ""),
            done=int(data.get("done") or 0), total=int(data.get("total") or 0),
            params=loads("params", {}), result=loads("result", None), error=loads("error", None),
            created=float(data.get("created") or 0), updated=float(data.get("updated") or 0),
            credits=int(data.get("credits") or 0), callback_url=data.get("callback_url", ""),
            app=data.get("app") or app_of(data["id"]),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A job as to_dict() (and the HTTP API) shows it."""
        progress = data.get("progress") or {}
        return cls(
            id=data["id"], name=data.get("name", ""), state=data.get("state", QUEUED), vendor=data.get("vendor", ""),
            phase=progress.get("phase", ""), done=int(progress.get("done") or 0),
            total=int(progress.get("total") or 0), params=data.get("params") or {}, result=data.get("result"),
            error=data.get("error"), created=float(data.get("created") or 0),
            updated=float(data.get("updated") or 0), credits=int(data.get("credits") or 0),
            callback_url=data.get("callback_url") or "", app=data.get("app") or DEFAULT_APP,
        )

    def seen_by_its_app(self) -> Job:
        """The job as its app sees it: under the app's own id."""
        return replace(self, id=own_id(self.id))

    def with_event(self, event: dict[str, Any]) -> Job:
        """This job as a published event (a summary of the record) says it is now."""
        known = {"state", "phase", "done", "total", "credits", "updated", "error"}
        return replace(self, **{key: value for key, value in event.items() if key in known})

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "app": self.app, "name": self.name, "vendor": self.vendor, "state": self.state,
            "progress": {"phase": self.phase, "done": self.done, "total": self.total},
            "params": self.params, "result": self.result, "error": self.error,
            "created": self.created, "updated": self.updated, "credits": self.credits,
            "callback_url": shown_url(self.callback_url) if self.callback_url else None,
        }
