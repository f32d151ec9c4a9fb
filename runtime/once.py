"""Vendor side effects done once: an image submitted, a task or map created, a paid call.

Delivery is at least once and any worker may die mid-call, so each effect of a job has a record:
a marker written just before its call, the result written just after. A later attempt that finds

    the result            returns it, calling nothing;
    a marker, no result   knows a call may have reached the vendor without its answer reaching us
                          (a marker noted "sent" knows its request left whole, see `in_flight`):
                          it asks `lookup` (does the map exist? is the object there?) before
                          anything is called again; while the earlier call may still be running
                          (`in_flight` seconds) it waits (EffectInFlight, a retry) rather than pay
                          twice; with no lookup at all it raises CutOff and the caller decides.

A call the vendor answered with a refusal (4xx) or a 5xx took no effect: its marker goes, and the
next attempt calls again. Only a call cut off without an answer leaves its marker.

    gq:job:<id>:once[:<scope>]        hash: effect name -> {"at": time, "seq": n} or {"result": ...}
    gq:job:<id>:once[:<scope>]:seq    counter giving markers their order (Redis's, not worker clocks)
    gq:job:<id>:once[:<scope>]:done   how many effects have their result recorded
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from config.redis_client import get_redis
from geoqueue import replicas
from geoqueue.ledger import RECORD_TTL_SECONDS
from geoqueue.ledger_keys import job_key
from vendors.errors import TransientError, VendorError

T = TypeVar("T")

# Write the marker unless the effect has a record already; returns the record found, or nil.
_MARK = """
local found = redis.call('HGET', KEYS[1], ARGV[1])
if found then return found end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], string.format('{"at": %s, "seq": %d}', ARGV[2], seq))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return false
"""


# Note a time on a marker (not on a result): ARGV[2] the field, ARGV[3] the time (empty: none).
# "sent": its call's request left whole, or (empty) its answer came; "cut": its call was cut off,
# so the vendor may act on it from then on, however long the call had run.
_NOTE = """
local found = redis.call('HGET', KEYS[1], ARGV[1])
if not found or string.find(found, '"result"', 1, true) then return 0 end
local marker = cjson.decode(found)
marker[ARGV[2]] = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(marker))
return 1
"""


# Record a result; count it the first time the effect gets one (then 1, else 0).
_RECORD = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if not before or not string.find(before, '"result"', 1, true) then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0
"""


class EffectInFlight(TransientError):
    """An earlier attempt of this call may still be running at the vendor; try again later."""


class NotOnReplica(TransientError):
    """No replica acknowledged the marker in time: its call waits for a later attempt."""


class CutOff(Exception):
    """A call of this effect was cut off without an answer and nothing can tell whether it took effect."""

    def __init__(self, name: str, marker: dict) -> None:
        super().__init__(name)
        self.name, self.marker = name, marker


@dataclass
class Effect(Generic[T]):
    result: T
    first: bool = False   # this attempt recorded the result: what it costs is counted now, by this attempt


def answered(exc: BaseException) -> bool:
    """The vendor answered: the call is over and, as it failed, took no effect (VendorError.answered)."""
    return isinstance(exc, VendorError) and exc.answered


class Once:
    """The effects of one job (of one kind of them, with `scope`)."""

    def __init__(self, job_id: str, scope: str = "") -> None:
        self.redis = get_redis()
        self.key = f"{job_key(job_id)}:once" + (f":{scope}" if scope else "")
        self._mark = self.redis.register_script(_MARK)
        self._record = self.redis.register_script(_RECORD)
        self._note = self.redis.register_script(_NOTE)

    def entry(self, name: str) -> dict | None:
        raw = self.redis.hget(self.key, name)
        return json.loads(raw) if raw else None

    def markers(self) -> dict[str, dict]:
        """Every effect begun and not recorded: name -> marker."""
        entries = {name: json.loads(raw) for name, raw in self.redis.hgetall(self.key).items()}
        return {name: entry for name, entry in entries.items() if "result" not in entry}

    def record(self, name: str, result: Any) -> bool:
        """Record the effect's result; True the first time it has one."""
        return bool(self._record(keys=[self.key, f"{self.key}:done"],
                                 args=[name, json.dumps({"result": result}), RECORD_TTL_SECONDS]))

    def in_flight(self, name: str, sent: bool) -> None:
        """A request of the call `name` has left whole (`sent`), or its answer came: cut off in between,
        the request reached the vendor, which acts on it unless it was refusing it; cut off before it
        left, or after a refusal it read (a retry waiting), the call took no effect."""
        self._note(keys=[self.key], args=[name, "sent", time.time() if sent else ""])

    def done(self) -> int:
        """How many effects have their result recorded."""
        return int(self.redis.get(f"{self.key}:done") or 0)

    def forget(self, name: str) -> None:
        self.redis.hdel(self.key, name)

    def _mark_durably(self, name: str) -> None:
        """Write the marker of `name`, and when Redis has replicas, wait until one holds it."""
        marked = replicas.write(self.redis, lambda pipe: self._mark(
            keys=[self.key, f"{self.key}:seq"], args=[name, time.time(), RECORD_TTL_SECONDS], client=pipe),
            f"the marker of {name} in {self.key}")
        if marked.result:
            raise EffectInFlight(f"another attempt of {name} began just now", retry_after=1.0)
        if not marked.held:
            self.forget(name)       # its call was not made: a later attempt marks it again
            raise NotOnReplica(f"no Redis replica acknowledged the marker of {name} within "
                               f"{replicas.wait_ms()} ms; its call waits", retry_after=5.0)

    def run(self, name: str, call: Callable[[], T], lookup: Callable[[float], T | None] | None = None, *,
            in_flight: float = 0.0) -> Effect[T]:
        """Make the effect `name` happen once. `lookup(since)` finds the effect made by a call cut off
        since that time (None: not there). A call cut off counts as in flight for `in_flight` seconds
        from when it was cut off."""
        entry = self.entry(name)
        if entry and "result" in entry:
            return Effect(entry["result"])
        if lookup is not None and entry:
            found = lookup(entry["at"])
            if found is not None:
                return Effect(found, first=self.record(name, found))
        if entry:
            since = time.time() - float(entry.get("cut", entry["at"]))
            if since < in_flight:
                raise EffectInFlight(f"an earlier attempt of {name} may still be running",
                                     retry_after=min(in_flight - since, 30.0) + 1)
            if lookup is None:
                raise CutOff(name, entry)
            self.forget(name)     # looked for and not there, and no longer in flight: call again
        self._mark_durably(name)
        try:
            result = call()
        except BaseException as exc:
            if answered(exc):
                self.forget(name)   # the vendor answered: the call is over and took no effect
            else:
                self._note(keys=[self.key], args=[name, "cut", time.time()])
            raise
        return Effect(result, first=self.record(name, result))
