"""The job ledger: durable job records in Redis, readable by producers, written by workers.

A job outlives any worker: its record, not a Celery result, is the truth about it.

    gq:job:<id>              hash: id, name, vendor, state, phase, done, total, params, result, error, ...
    gq:job:<id>:items        hash: item key -> JSON outcome (batch jobs)
    gq:job:<id>:finished     set of item keys whose outcome is recorded
    gq:job:<id>:console      list of vendor console lines (where a vendor has them)
    gq:job:<id>:deliveries   list of JSON webhook delivery attempts
    gq:jobs:vendor:<v>:state:<s>   sorted set of job ids by creation time: a list reads the
                             indexes of its filters and merges them (one index per vendor and
                             state, so a job costs one index entry, whatever the filters)
    gq:jobs:vendors          set of the vendors that have jobs
    gq:jobs:counts           hash "<vendor>/<state>" -> jobs on record: a scrape reads this alone
    gq:jobs:expiring         sorted set "<vendor>/<state>/<id>" by the time a finished record expires
    gq:events:<id>           pub/sub channel: a JSON summary of the job at every change
    gq:ended                 stream of jobs that reached an end state (the webhook deliverer reads it)

Every write is one Lua script, so a record, its indexes, its counters and its event never disagree.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import redis

from geoqueue.params import InvalidParams

QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, CANCELED = (
    "queued", "running", "waiting", "succeeded", "failed", "canceled")
STATES = (QUEUED, RUNNING, WAITING, SUCCEEDED, FAILED, CANCELED)
TERMINAL = (SUCCEEDED, FAILED, CANCELED)

VENDORS_KEY = "gq:jobs:vendors"
COUNTS_KEY = "gq:jobs:counts"
EXPIRING_KEY = "gq:jobs:expiring"
ENDED_STREAM = "gq:ended"
ENDED_STREAM_LENGTH = 100_000        # about; a deliverer down for longer than this many job ends loses the oldest
EVENTS_PATTERN = "gq:events:*"
# Finished records are kept this long (the fleet's GEOQUEUE_RESULT_EXPIRES; read here from the
# environment because a producer app has no fleet settings).
RECORD_TTL_SECONDS = int(os.environ.get("GEOQUEUE_RESULT_EXPIRES") or 7 * 24 * 3600)
# Job ids name Redis keys and output objects: letters, digits, '-' and '_' only, never a path.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CREATED, SAME, CONFLICT = 1, 0, -1
COMPANIONS = ("", ":items", ":finished", ":console", ":charged", ":deliveries")

# Shared by every script: the index keys and the event a change publishes. The event carries the
# record's summary (no params, no result): what a waiting client or a progress bar needs.
_LUA_COMMON = """
local TERMINAL = {succeeded=true, failed=true, canceled=true}
local function index(vendor, state)
  return 'gq:jobs:vendor:' .. vendor .. ':state:' .. state
end
local function publish(key, id)
  local f = redis.call('HMGET', key, 'name', 'vendor', 'state', 'phase', 'done', 'total', 'credits', 'updated', 'error')
  local event = {id=id, name=f[1] or '', vendor=f[2] or '', state=f[3] or '', phase=f[4] or '',
                 done=tonumber(f[5]) or 0, total=tonumber(f[6]) or 0, credits=tonumber(f[7]) or 0,
                 updated=tonumber(f[8]) or 0}
  if f[9] and f[9] ~= 'null' and f[9] ~= '' then event['error'] = cjson.decode(f[9]) end
  redis.call('PUBLISH', 'gq:events:' .. id, cjson.encode(event))
end
local function forget(member)
  -- member is "<vendor>/<state>/<id>" of a finished record whose time is up
  local vendor, state, id = string.match(member, '^([^/]*)/([^/]*)/(.*)$')
  redis.call('ZREM', index(vendor, state), id)
  redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. state, -1)
  for _, suffix in ipairs({'', ':items', ':finished', ':console', ':charged', ':deliveries'}) do
    redis.call('DEL', 'gq:job:' .. id .. suffix)
  end
  redis.call('ZREM', 'gq:jobs:expiring', member)
end
local function expire_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', 'gq:jobs:expiring', '-inf', now, 'LIMIT', 0, limit)
  for _, member in ipairs(due) do forget(member) end
  return #due
end
"""

# A finished job stays finished: a late or redelivered task must not flip it back.
# KEYS[1] record; ARGV: state, force, ttl, now, id, field, value, ...
_TRANSITION = _LUA_COMMON + """
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return -1 end
local new, now, id = ARGV[1], tonumber(ARGV[4]), ARGV[5]
if TERMINAL[old] and ARGV[2] ~= '1' then return 0 end
local vendor = redis.call('HGET', KEYS[1], 'vendor') or ''
redis.call('HSET', KEYS[1], 'state', new, unpack(ARGV, 6))
if old ~= new then
  local created = redis.call('HGET', KEYS[1], 'created') or now
  redis.call('ZREM', index(vendor, old), id)
  redis.call('ZADD', index(vendor, new), created, id)
  redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. old, -1)
  redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. new, 1)
  if TERMINAL[old] then
    redis.call('ZREM', 'gq:jobs:expiring', vendor .. '/' .. old .. '/' .. id)
    redis.call('PERSIST', KEYS[1])
  end
  if TERMINAL[new] then
    for _, suffix in ipairs({'', ':items', ':finished', ':console', ':charged', ':deliveries'}) do
      redis.call('EXPIRE', KEYS[1] .. suffix, tonumber(ARGV[3]))
    end
    redis.call('ZADD', 'gq:jobs:expiring', now + tonumber(ARGV[3]), vendor .. '/' .. new .. '/' .. id)
    redis.call('XADD', 'gq:ended', 'MAXLEN', '~', '""" + str(ENDED_STREAM_LENGTH) + """', '*', 'id', id, 'state', new)
    expire_due(now, 10)
  end
end
publish(KEYS[1], id)
return 1
"""

# A record is created once; submitting its id again is the same job only with the same name and params.
# KEYS[1] record; ARGV: id, now, name, params, vendor, state, field, value, ...
_CREATE = _LUA_COMMON + """
local name = redis.call('HGET', KEYS[1], 'name')
if name then
  if name == ARGV[3] and redis.call('HGET', KEYS[1], 'params') == ARGV[4] then return 0 end
  return -1
end
local id, now, vendor, state = ARGV[1], ARGV[2], ARGV[5], ARGV[6]
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZADD', index(vendor, state), now, id)
redis.call('SADD', 'gq:jobs:vendors', vendor)
redis.call('HINCRBY', 'gq:jobs:counts', vendor .. '/' .. state, 1)
publish(KEYS[1], id)
return 1
"""

# Progress, credits and item outcomes change a running job: write, then tell whoever waits.
# KEYS[1] record; ARGV: id, field, value, ...
_UPDATE = _LUA_COMMON + """
if not redis.call('HGET', KEYS[1], 'state') then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
publish(KEYS[1], ARGV[1])
return 1
"""
_ADD_CREDITS = _LUA_COMMON + """
redis.call('HINCRBY', KEYS[1], 'credits', ARGV[2])
publish(KEYS[1], ARGV[1])
"""
# KEYS[1] record; ARGV: id, item, outcome, now. 1 when this call recorded the item first.
_RECORD_ITEM = _LUA_COMMON + """
local added = redis.call('SADD', KEYS[1] .. ':finished', ARGV[2])
redis.call('HSET', KEYS[1] .. ':items', ARGV[2], ARGV[3])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], 'done', 1)
  redis.call('HSET', KEYS[1], 'updated', ARGV[4])
  publish(KEYS[1], ARGV[1])
end
return added
"""
_EXPIRE_DUE = _LUA_COMMON + """
return expire_due(tonumber(ARGV[1]), tonumber(ARGV[2]))
"""


def job_key(job_id: str) -> str:
    return f"gq:job:{job_id}"


def event_channel(job_id: str) -> str:
    """The pub/sub channel on which every change of the job is published."""
    return f"gq:events:{job_id}"


def index_key(vendor: str, state: str) -> str:
    """The sorted set of the ids of a vendor's jobs in a state, by creation time."""
    return f"gq:jobs:vendor:{vendor}:state:{state}"


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


def check_callback_url(url: object) -> str:
    """An http(s) URL with a host; where it may point (no private addresses) is the fleet's check."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise InvalidParams(f"callback_url: must be an http or https URL, got {url!r}", field="callback_url")
    return url  # type: ignore[return-value]


def shown_url(url: str) -> str:
    """A callback URL as responses and logs show it: no user, password, query or fragment, which
    may carry the receiver's token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, netloc + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


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
    def from_hash(cls, data: dict[str, str]) -> "Job":
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

    def with_event(self, event: dict[str, Any]) -> "Job":
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


class Ledger:
    """Reads and writes job records. Every write bumps `updated`, so a sweeper can spot stalls,
    and publishes the job's event, so a waiting client wakes at once."""

    def __init__(self, client: redis.Redis, ttl: int | None = None) -> None:
        self.redis = client
        self.ttl = ttl or RECORD_TTL_SECONDS
        self._transition = client.register_script(_TRANSITION)
        self._create = client.register_script(_CREATE)
        self._update = client.register_script(_UPDATE)
        self._add_credits = client.register_script(_ADD_CREDITS)
        self._record_item = client.register_script(_RECORD_ITEM)
        self._expire_due = client.register_script(_EXPIRE_DUE)

    # --- create and read ---
    def create(self, job_id: str, name: str, params: dict, state: str = QUEUED, callback_url: str | None = None) -> int:
        """Record a new job: CREATED; SAME when the id has a record of this name and params already
        (a submit again, a redelivered message); CONFLICT when its record is another job's."""
        now, stored, vendor = time.time(), canonical(params), name.split(".", 1)[0]
        record = {
            "id": job_id, "name": name, "vendor": vendor, "state": state,
            "phase": state, "done": 0, "total": 0, "params": stored,
            "created": now, "updated": now, "credits": 0, "sent": 0,
        }
        if callback_url:
            record["callback_url"] = callback_url
        flat = [value for pair in record.items() for value in pair]
        return int(self._create(keys=[job_key(job_id)], args=[job_id, now, name, stored, vendor, state, *flat]))

    def mark_sent(self, job_id: str) -> None:
        """The job's message reached the broker."""
        self.redis.hset(job_key(job_id), "sent", time.time())

    def sent(self, job_id: str) -> bool:
        return float(self.redis.hget(job_key(job_id), "sent") or 0) > 0

    def mark_taken(self, job_id: str) -> None:
        """A worker took the job's message: from now on the job is the fleet's to finish."""
        self.redis.hsetnx(job_key(job_id), "taken", time.time())

    def oldest(self, state: str, limit: int = 100) -> list[Job]:
        """The jobs longest in the ledger among those in `state`, oldest first."""
        check_state(state)
        pipe = self.redis.pipeline(transaction=False)
        for vendor in sorted(self.redis.smembers(VENDORS_KEY)):
            pipe.zrange(index_key(vendor, state), 0, limit - 1, withscores=True)
        entries = sorted((score, job_id) for batch in pipe.execute() for job_id, score in batch)[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for _, job_id in entries:
            pipe.hgetall(job_key(job_id))
        return [Job.from_hash(data) for data in pipe.execute() if data.get("name")]

    def get(self, job_id: str) -> Job | None:
        data = self.redis.hgetall(job_key(job_id))
        return Job.from_hash(data) if data.get("name") else None

    def page(self, limit: int = 50, state: str | None = None, vendor: str | None = None,
             cursor: str | None = None) -> tuple[list[Job], str | None]:
        """Newest first, merged from the indexes of these filters; `cursor` (from the previous page)
        continues after the last job shown. Returns the jobs and the next page's cursor (None at the end).
        Reads about `limit` entries per index, however many jobs there are."""
        if state is not None:
            check_state(state)
        vendors = [vendor] if vendor else sorted(self.redis.smembers(VENDORS_KEY))
        keys = [index_key(v, s) for v in vendors for s in ([state] if state else STATES)]
        top, after = ("+inf", None) if not cursor else _parse_cursor(cursor)
        found: list[Job] = []
        while len(found) < limit:
            need = limit - len(found)
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                # a little more than needed: entries tied with the cursor are skipped below
                pipe.zrevrangebyscore(key, top, "-inf", start=0, num=need + 50, withscores=True)
            entries = sorted(((score, job_id) for batch in pipe.execute() for job_id, score in batch), reverse=True)
            if after is not None:
                entries = [(score, i) for score, i in entries if not (score == float(top) and i >= after)]
            entries = entries[:need]
            if not entries:
                return found, None
            pipe = self.redis.pipeline(transaction=False)
            for _, job_id in entries:
                pipe.hgetall(job_key(job_id))
            for data in pipe.execute():
                if data.get("name"):  # else expired: the expiry sweep drops its index entry
                    found.append(Job.from_hash(data))
            top, after = repr(entries[-1][0]), entries[-1][1]
        return found, f"{top}:{after}"

    def recent(self, limit: int = 50, state: str | None = None, vendor: str | None = None) -> Iterator[Job]:
        """Newest first, filtered."""
        jobs, _ = self.page(limit, state=state, vendor=vendor)
        yield from jobs

    def counts(self) -> dict[tuple[str, str], int]:
        """Jobs on record by (vendor, state): one read, however many jobs."""
        out = {}
        for key, value in self.redis.hgetall(COUNTS_KEY).items():
            vendor, _, state = key.partition("/")
            out[(vendor, state)] = int(value)
        return out

    def expire_due(self, limit: int = 1000) -> int:
        """Drop the index entries and counts of finished records whose time is up; how many."""
        return int(self._expire_due(keys=[EXPIRING_KEY], args=[time.time(), limit]))

    # --- state changes ---
    def transition(self, job_id: str, state: str, *, force: bool = False, **fields: Any) -> bool:
        """Move a job to `state` with extra fields; refused (False) once the job has finished."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        fields.setdefault("phase", state)
        now = time.time()
        flat: list[Any] = []
        for key, value in {**fields, "updated": now}.items():
            if key in ("result", "error"):
                value = json.dumps(value)
            flat += [key, value]
        outcome = self._transition(keys=[job_key(job_id)],
                                   args=[state, "1" if force else "0", self.ttl, now, job_id, *flat])
        return outcome == 1

    def progress(self, job_id: str, phase: str, done: int | None = None, total: int | None = None) -> None:
        fields: dict[str, Any] = {"phase": phase, "updated": time.time()}
        if done is not None:
            fields["done"] = done
        if total is not None:
            fields["total"] = total
        self._update(keys=[job_key(job_id)], args=[job_id, *[v for pair in fields.items() for v in pair]])

    def add_credits(self, job_id: str, amount: int) -> None:
        self._add_credits(keys=[job_key(job_id)], args=[job_id, amount])

    # --- batch items ---
    def record_item(self, job_id: str, item: str, outcome: dict) -> bool:
        """Store an item's outcome once; True if this call recorded it (False on a repeat)."""
        return bool(self._record_item(keys=[job_key(job_id)], args=[job_id, item, json.dumps(outcome), time.time()]))

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

    # --- webhook deliveries ---
    def record_delivery(self, job_id: str, attempt: dict[str, Any]) -> None:
        """One webhook delivery attempt and its outcome, kept as long as the record."""
        key = f"{job_key(job_id)}:deliveries"
        pipe = self.redis.pipeline()
        pipe.rpush(key, json.dumps(attempt))
        pipe.expire(key, self.ttl)
        pipe.execute()

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.redis.lrange(f"{job_key(job_id)}:deliveries", 0, -1)]


def upgrade(client: redis.Redis, old_index: str = "gq:jobs", batch: int = 1000) -> int:
    """Index the records of a ledger written before the indexes and counters (one index of every
    job, `gq:jobs`), then drop that index; how many records. Run once per fleet, before new writes:
    `python -m geoqueue.jobs upgrade`."""
    moved = 0
    while ids := client.zrange(old_index, 0, batch - 1, withscores=True):
        pipe = client.pipeline(transaction=False)
        for job_id, _ in ids:
            pipe.hmget(job_key(job_id), "vendor", "state")
            pipe.ttl(job_key(job_id))
        found = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for (job_id, created), (vendor, state), ttl in zip(ids, found[::2], found[1::2]):
            if vendor and state:
                pipe.zadd(index_key(vendor, state), {job_id: created})
                pipe.sadd(VENDORS_KEY, vendor)
                pipe.hincrby(COUNTS_KEY, f"{vendor}/{state}", 1)
                if state in TERMINAL and ttl > 0:
                    pipe.zadd(EXPIRING_KEY, {f"{vendor}/{state}/{job_id}": time.time() + ttl})
                moved += 1
        pipe.zrem(old_index, *[job_id for job_id, _ in ids])
        pipe.execute()
    return moved


def _parse_cursor(cursor: str) -> tuple[str, str]:
    score, sep, job_id = cursor.partition(":")
    try:
        float(score)
    except ValueError:
        sep = ""
    if not sep or not JOB_ID.fullmatch(job_id):
        raise InvalidParams(f"cursor: {cursor!r} is not a cursor from a previous page", field="cursor")
    return score, job_id


if __name__ == "__main__":
    import sys

    from geoqueue.redis_url import connect

    if sys.argv[1:] != ["upgrade"]:
        sys.exit("usage: python -m geoqueue.jobs upgrade   (GEOQUEUE_REDIS_URL names the fleet's Redis)")
    url = os.environ.get("GEOQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")
    print(upgrade(connect(url, os.environ.get("GEOQUEUE_REDIS_SENTINEL_MASTER"), decode_responses=True)),
          "records indexed")
