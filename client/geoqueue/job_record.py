"""A job's record as producers and workers read it: its states, its id, its stored parameters and
the `Job` it reads back as. Where records live in Redis: geoqueue/ledger_keys.py."""
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


def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: object) -> str:
    """A caller-chosen job id, refused unless it is 1 to 64 letters, digits, '-' or '_'."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise InvalidParams(f"job_id: {job_id!r} is not a job id: 1 to 64 letters, digits, '-' or '_'", field="job_id")
    return job_id


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
        )

    def with_event(self, event: dict[str, Any]) -> Job:
        """This job as a published event (a summary of the record) says it is now."""
        known = {"state", "phase", "done", "total", "credits", "updated", "error"}
        return replace(self, **{key: value for key, value in event.items() if key in known})

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "vendor": self.vendor, "state": self.state,
            "progress": {"phase": self.phase, "done": self.done, "total": self.total},
            "params": self.params, "result": self.result, "error": self.error,
            "created": self.created, "updated": self.updated, "credits": self.credits,
            "callback_url": shown_url(self.callback_url) if self.callback_url else None,
        }
