"""The job ledger: durable job records in Redis, readable by producers, written by workers.

A job outlives any worker: its record, not a Celery result, is the truth about it. Key layout:
geoqueue/ledger_keys.py; the scripts that write it: geoqueue/ledger_scripts.py.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import redis

from geoqueue import replicas
from geoqueue.job_record import DEFAULT_APP, QUEUED, STATES, STORED_ID, TERMINAL, Job, app_of, canonical, check_state
from geoqueue.ledger_keys import APPS_KEY, COUNTS_KEY, EXPIRING_KEY, VENDORS_KEY, index_key, job_key
from geoqueue.ledger_scripts import (
    ADD_CREDITS_SCRIPT,
    ANNOUNCE_SCRIPT,
    CREATE_SCRIPT,
    EXPIRE_DUE_SCRIPT,
    RECORD_ITEM_SCRIPT,
    TRANSITION_SCRIPT,
    UPDATE_SCRIPT,
)
from geoqueue.params import InvalidParams

# Finished records are kept this long (the fleet's GEOQUEUE_RESULT_EXPIRES; read here from the
# environment because a producer app has no fleet settings).
RECORD_TTL_SECONDS = int(os.environ.get("GEOQUEUE_RESULT_EXPIRES") or 7 * 24 * 3600)
CREATED, SAME, CONFLICT = 1, 0, -1


class Ledger:
    """Reads and writes job records. Every write bumps `updated`, so a sweeper can spot stalls,
    and publishes the job's event, so a waiting client wakes at once."""

    def __init__(self, client: redis.Redis, ttl: int | None = None) -> None:
        self.redis = client
        self.ttl = ttl or RECORD_TTL_SECONDS
        self._transition = client.register_script(TRANSITION_SCRIPT)
        self._create = client.register_script(CREATE_SCRIPT)
        self._update = client.register_script(UPDATE_SCRIPT)
        self._add_credits = client.register_script(ADD_CREDITS_SCRIPT)
        self._record_item = client.register_script(RECORD_ITEM_SCRIPT)
        self._expire_due = client.register_script(EXPIRE_DUE_SCRIPT)
        self._announce = client.register_script(ANNOUNCE_SCRIPT)

    # --- create and read ---
    def create(self, job_id: str, name: str, params: dict, state: str = QUEUED, callback_url: str | None = None) -> int:
        """Record a new job under its stored id (geoqueue/job_record.py): CREATED; SAME when the id has
        a record of this name and params already (a submit again, a redelivered message); CONFLICT
        when its record is another job's."""
        now, stored, vendor = time.time(), canonical(params), name.split(".", 1)[0]
        record = {
            "id": job_id, "app": app_of(job_id), "name": name, "vendor": vendor, "state": state,
            "phase": state, "done": 0, "total": 0, "params": stored,
            "created": now, "updated": now, "credits": 0, "sent": 0,
        }
        if callback_url:
            record["callback_url"] = callback_url
        flat = [value for pair in record.items() for value in pair]
        # On a replica before the producer has the id: a failover cannot lose a job it was told of.
        created = replicas.write(self.redis, lambda pipe: self._create(
            keys=[job_key(job_id)], args=[job_id, now, name, stored, vendor, state, *flat], client=pipe),
            f"the record of job {job_id}")
        return int(created.result)

    def mark_sent(self, job_id: str) -> None:
        """The job's message reached the broker."""
        self.redis.hset(job_key(job_id), "sent", time.time())

    def sent(self, job_id: str) -> bool:
        return float(self.redis.hget(job_key(job_id), "sent") or 0) > 0

    def mark_taken(self, job_id: str) -> None:
        """A worker took the job's message: from now on the job is the fleet's to finish."""
        self.redis.hsetnx(job_key(job_id), "taken", time.time())

    def apps(self) -> list[str]:
        """Every app that has jobs on record, the default one first."""
        return [DEFAULT_APP, *sorted(self.redis.smembers(APPS_KEY))]

    def oldest(self, state: str, limit: int = 100) -> list[Job]:
        """The jobs longest in the ledger among those in `state`, oldest first, of every app."""
        check_state(state)
        pipe = self.redis.pipeline(transaction=False)
        for app in self.apps():
            for vendor in sorted(self.redis.smembers(VENDORS_KEY)):
                pipe.zrange(index_key(vendor, state, app), 0, limit - 1, withscores=True)
        entries = sorted((score, job_id) for batch in pipe.execute() for job_id, score in batch)[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for _, job_id in entries:
            pipe.hgetall(job_key(job_id))
        return [Job.from_hash(data) for data in pipe.execute() if data.get("name")]

    def get(self, job_id: str) -> Job | None:
        data = self.redis.hgetall(job_key(job_id))
        return Job.from_hash(data) if data.get("name") else None

    def page(self, limit: int = 50, state: str | None = None, vendor: str | None = None,
             cursor: str | None = None, app: str | None = None) -> tuple[list[Job], str | None]:
        """Newest first, merged from the indexes of these filters (one app's, or every app's when `app`
        is None); `cursor` (from the previous page) continues after the last job shown. Returns the
        jobs and the next page's cursor (None at the end). Reads about `limit` entries per index,
        however many jobs there are."""
        if state is not None:
            check_state(state)
        vendors = [vendor] if vendor else sorted(self.redis.smembers(VENDORS_KEY))
        keys = [index_key(v, s, a) for a in ([app] if app else self.apps())
                for v in vendors for s in ([state] if state else STATES)]
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

    def recent(self, limit: int = 50, state: str | None = None, vendor: str | None = None,
               app: str | None = None) -> Iterator[Job]:
        """Newest first, filtered (of every app unless `app` is given)."""
        jobs, _ = self.page(limit, state=state, vendor=vendor, app=app)
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
        # An end is on a replica before anyone hears of it (its event), and before the caller goes on.
        timeout = replicas.wait_timeout(self.redis) if state in TERMINAL else 0
        pipe = self.redis.pipeline(transaction=False)
        self._transition(keys=[job_key(job_id)], client=pipe,
                         args=[state, "1" if force else "0", self.ttl, now, job_id, "0" if timeout else "1", *flat])
        if timeout:
            replicas.add_wait(pipe, timeout)
            self._announce(keys=[job_key(job_id)], args=[job_id], client=pipe)
        outcome, *waited = pipe.execute()
        if timeout:
            replicas.acknowledged(int(waited[0]), timeout, f"the end of job {job_id}")
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


def _parse_cursor(cursor: str) -> tuple[str, str]:
    score, sep, job_id = cursor.partition(":")
    try:
        finite = math.isfinite(float(score))  # Redis refuses "nan" as a score bound (a 500, not a 422)
    except ValueError:
        finite = False
    if not finite:
        sep = ""
    if not sep or not STORED_ID.fullmatch(job_id):
        raise InvalidParams(f"cursor: {cursor!r} is not a cursor from a previous page", field="cursor")
    return score, job_id
