"""The job ledger: durable job records in Redis, readable by producers, written by workers.

A job outlives any worker: its record, not a Celery result, is the truth about it.

    gq:job:<id>            hash: id, name, vendor, state, phase, done, total, params, result, error, ...
    gq:job:<id>:items      hash: item key -> JSON outcome (batch jobs)
    gq:job:<id>:finished   set of item keys whose outcome is recorded
    gq:job:<id>:console    list of vendor console lines (where a vendor has them)
    gq:jobs                sorted set of job ids by creation time
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import redis

from geoqueue.params import InvalidParams

QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, CANCELED = (
    "queued", "running", "waiting", "succeeded", "failed", "canceled")
STATES = (QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, CANCELED)
TERMINAL = (SUCCEEDED, FAILED, CANCELED)

INDEX_KEY = "gq:jobs"
RECORD_TTL_SECONDS = 7 * 24 * 3600
# Job ids name Redis keys and output objects: letters, digits, '-' and '_' only, never a path.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CREATED, SAME, CONFLICT = 1, 0, -1

# A finished job stays finished: a late or redelivered task must not flip it back.
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if (state == 'succeeded' or state == 'failed' or state == 'canceled') and ARGV[2] ~= '1' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], unpack(ARGV, 4))
if ARGV[1] == 'succeeded' or ARGV[1] == 'failed' or ARGV[1] == 'canceled' then
  for _, suffix in ipairs({'', ':items', ':finished', ':console', ':charged'}) do
    redis.call('EXPIRE', KEYS[1] .. suffix, tonumber(ARGV[3]))
  end
end
return 1
"""

# A record is created once; submitting its id again is the same job only with the same name and params.
_CREATE = """
local name = redis.call('HGET', KEYS[1], 'name')
if name then
  if name == ARGV[3] and redis.call('HGET', KEYS[1], 'params') == ARGV[4] then return 0 end
  return -1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


def job_key(job_id: str) -> str:
    return f"gq:job:{job_id}"


def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: object) -> str:
    """A caller-chosen job id, refused unless it is 1 to 64 letters, digits, '-' or '_'."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise InvalidParams(f"job_id: {job_id!r} is not a job id: 1 to 64 letters, digits, '-' or '_'", field="job_id")
    return job_id


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

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> "Job":
        def loads(key: str, default: Any) -> Any:
            return json.loads(data[key]) if data.get(key) else default

        return cls(
            id=data["id"], name=data.get("name", ""), state=data.get("state", QUEUED),
            vendor=data.get("vendor", ""), phase=data.get("phase", ""),
            done=int(data.get("done") or 0), total=int(data.get("total") or 0),
            params=loads("params", {}), result=loads("result", None), error=loads("error", None),
            created=float(data.get("created") or 0), updated=float(data.get("updated") or 0),
            credits=int(data.get("credits") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "vendor": self.vendor, "state": self.state,
            "progress": {"phase": self.phase, "done": self.done, "total": self.total},
            "params": self.params, "result": self.result, "error": self.error,
            "created": self.created, "updated": self.updated, "credits": self.credits,
        }


class Ledger:
    """Reads and writes job records. Every write bumps `updated`, so a sweeper can spot stalls."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(_TRANSITION)
        self._create = client.register_script(_CREATE)

    # --- create and read ---
    def create(self, job_id: str, name: str, params: dict, state: str = QUEUED) -> int:
        """Record a new job: CREATED; SAME when the id has a record of this name and params already
        (a submit again, a redelivered message); CONFLICT when its record is another job's."""
        now, stored = time.time(), canonical(params)
        record = {
            "id": job_id, "name": name, "vendor": name.split(".", 1)[0], "state": state,
            "phase": state, "done": 0, "total": 0, "params": stored,
            "created": now, "updated": now, "credits": 0, "sent": 0,
        }
        flat = [value for pair in record.items() for value in pair]
        return int(self._create(keys=[job_key(job_id), INDEX_KEY], args=[job_id, now, name, stored, *flat]))

    def mark_sent(self, job_id: str) -> None:
        """The job's message reached the broker."""
        self.redis.hset(job_key(job_id), "sent", time.time())

    def sent(self, job_id: str) -> bool:
        return float(self.redis.hget(job_key(job_id), "sent") or 0) > 0

    def get(self, job_id: str) -> Job | None:
        data = self.redis.hgetall(job_key(job_id))
        return Job.from_hash(data) if data.get("name") else None

    def recent(self, limit: int = 50, state: str | None = None, vendor: str | None = None) -> Iterator[Job]:
        """Newest first, filtered; ids whose record expired are dropped from the index on the way."""
        found = 0
        start = 0
        while found < limit:
            ids = self.redis.zrevrange(INDEX_KEY, start, start + 199)
            if not ids:
                return
            start += len(ids)
            for job_id in ids:
                job = self.get(job_id)
                if job is None:
                    self.redis.zrem(INDEX_KEY, job_id)
                    continue
                if (state and job.state != state) or (vendor and job.vendor != vendor):
                    continue
                yield job
                found += 1
                if found >= limit:
                    return

    # --- state changes ---
    def transition(self, job_id: str, state: str, *, force: bool = False, **fields: Any) -> bool:
        """Move a job to `state` with extra fields; refused (False) once the job has finished."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        fields.setdefault("phase", state)
        flat: list[Any] = []
        for key, value in {**fields, "updated": time.time()}.items():
            if key in ("result", "error"):
                value = json.dumps(value)
            flat += [key, value]
        outcome = self._transition(keys=[job_key(job_id)],
                                   args=[state, "1" if force else "0", RECORD_TTL_SECONDS, *flat])
        return outcome == 1

    def progress(self, job_id: str, phase: str, done: int | None = None, total: int | None = None) -> None:
        fields: dict[str, Any] = {"phase": phase, "updated": time.time()}
        if done is not None:
            fields["done"] = done
        if total is not None:
            fields["total"] = total
        self.redis.hset(job_key(job_id), mapping=fields)

    def add_credits(self, job_id: str, amount: int) -> None:
        self.redis.hincrby(job_key(job_id), "credits", amount)

    # --- batch items ---
    def record_item(self, job_id: str, item: str, outcome: dict) -> bool:
        """Store an item's outcome once; True if this call recorded it (False on a repeat)."""
        key = job_key(job_id)
        pipe = self.redis.pipeline()
        pipe.sadd(f"{key}:finished", item)
        pipe.hset(f"{key}:items", item, json.dumps(outcome))
        added, _ = pipe.execute()
        if added:
            self.redis.hincrby(key, "done", 1)
            self.redis.hset(key, "updated", time.time())
        return bool(added)

    def item_is_recorded(self, job_id: str, item: str) -> bool:
        return bool(self.redis.sismember(f"{job_key(job_id)}:finished", item))

    def items(self, job_id: str) -> dict[str, dict]:
        raw = self.redis.hgetall(f"{job_key(job_id)}:items")
        return {item: json.loads(value) for item, value in raw.items()}

    def finished_count(self, job_id: str) -> int:
        return int(self.redis.scard(f"{job_key(job_id)}:finished"))

    # --- console lines (vendors that stream logs) ---
    def append_console(self, job_id: str, lines: list[str]) -> int:
        if lines:
            self.redis.rpush(f"{job_key(job_id)}:console", *lines)
        return int(self.redis.llen(f"{job_key(job_id)}:console"))

    def console(self, job_id: str, start: int = 0) -> list[str]:
        return list(self.redis.lrange(f"{job_key(job_id)}:console", start, -1))
