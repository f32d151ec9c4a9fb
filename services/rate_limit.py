"""Fleet-wide rate limits in Redis: every worker process takes its slot from the same place
(Celery's own rate_limit counts per worker, so it cannot hold a vendor's limit for a fleet).

Two kinds of limit, each kept under a name (say a vendor, an account's alias and a family of calls):

- `Rate`: at most `limit` calls in any window of `period` seconds, spread out evenly. It is the
  generic cell rate algorithm (a token bucket stored as one timestamp): `burst` calls may go at
  once, the others follow one per interval, and the interval is chosen so that no window of
  `period` seconds, wherever it starts, holds more than `limit` calls.
- `Budget`: at most `limit` calls per calendar window of `period` seconds counted from the
  epoch (86,400: a UTC day), as vendors count daily quotas; all of it may be spent at once.

Redis' clock decides (TIME inside the scripts), so workers whose clocks drift still agree.
A caller learns how long to wait for its slot; `acquire` waits when that is short and raises
`FleetLimitReached` (a RateLimited, so job tasks retry later) when it is not.

    gq:rate:<name>           GCRA theoretical arrival time, microseconds
    gq:rate:<name>:<window>  calls counted in one budget window
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from requests.adapters import HTTPAdapter

from vendors.errors import RateLimited

KEY_PREFIX = "gq:rate"
MICROSECONDS = 1_000_000

# Returns 0 when the call may go (its slot is taken), else microseconds until it may.
_RATE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
if tat - now > tolerance then
  return math.ceil(tat - tolerance - now)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
"""

_BUDGET = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local period = tonumber(ARGV[1]) * 1000000
local window = math.floor(now / period)
local key = KEYS[1] .. ':' .. string.format('%.0f', window)
if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2]) then
  return math.ceil((window + 1) * period - now)
end
redis.call('INCR', key)
redis.call('EXPIRE', key, math.ceil(period / 1000000) + 60)
return 0
"""


@dataclass(frozen=True)
class Rate:
    """At most `limit` calls in any `period`-second window, `burst` of them at once."""
    limit: int
    period: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0 or not 1 <= self.burst <= self.limit:
            raise ValueError(f"a rate needs limit >= 1, period > 0 and 1 <= burst <= limit, got {self}")

    @classmethod
    def per_minute(cls, limit: int) -> Rate:
        """A vendor's per-minute limit, with a second's worth of calls allowed at once."""
        return cls(limit, 60.0, burst=max(1, limit // 60))

    @property
    def interval_us(self) -> float:
        # The bucket starts with `burst` calls and refills one per interval: burst + period/interval <= limit.
        return self.period * MICROSECONDS / max(1, self.limit - self.burst)

    @property
    def tolerance_us(self) -> float:
        return (self.burst - 1) * self.interval_us


@dataclass(frozen=True)
class Budget:
    """At most `limit` calls per calendar window of `period` seconds (from the epoch: UTC days for 86,400)."""
    limit: int
    period: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValueError(f"a budget needs limit >= 1 and period > 0, got {self}")


Limit = Rate | Budget


class FleetLimitReached(RateLimited):
    """The fleet's own limit has no slot soon enough; `retry_after` says when one opens."""


class FleetRateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._rate = client.register_script(_RATE)
        self._budget = client.register_script(_BUDGET)

    def take(self, name: str, limit: Limit) -> float:
        """Take a slot now if there is one (returns 0.0); otherwise seconds until there may be."""
        key = f"{KEY_PREFIX}:{name}"
        if isinstance(limit, Rate):
            wait = self._rate(keys=[key], args=[limit.interval_us, limit.tolerance_us])
        else:
            wait = self._budget(keys=[key], args=[limit.period, limit.limit])
        return int(wait) / MICROSECONDS

    def acquire(self, name: str, limit: Limit, max_wait: float) -> None:
        """Wait for a slot while the wait stays within `max_wait` seconds in all; raise FleetLimitReached
        when it would take longer. Several processes may want the next slot: ask again after each wait."""
        deadline = time.monotonic() + max_wait
        while True:
            wait = self.take(name, limit)
            if wait == 0:
                return
            if time.monotonic() + wait > deadline:
                raise FleetLimitReached(f"fleet-wide limit {name} reached ({limit}); next slot in {wait:.1f}s",
                                        retry_after=wait)
            time.sleep(wait)


class RateLimitedAdapter(HTTPAdapter):
    """A requests adapter that takes a slot of a fleet-wide limit before each request it sends:
    mount it on the URL prefix the limit covers (`session.mount(prefix, adapter)`)."""

    def __init__(self, limiter: FleetRateLimiter, name: str, limit: Limit, max_wait: float) -> None:
        super().__init__()
        self.limiter, self.name, self.limit, self.max_wait = limiter, name, limit, max_wait

    def send(self, request, *args, **kwargs):
        self.limiter.acquire(self.name, self.limit, self.max_wait)
        return super().send(request, *args, **kwargs)
