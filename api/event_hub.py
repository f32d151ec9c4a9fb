"""Every job's events reach an API process through one Redis subscription, fanned out in memory to
its open event streams; one key holds at most GEOQUEUE_API_MAX_STREAMS_PER_KEY streams open.

A subscription per stream took a connection from the pool each: about a hundred open streams
emptied the pool, and every other stream then failed (MaxConnectionsError)."""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter

import redis.asyncio as aioredis

from geoqueue.ledger_keys import EVENTS_PATTERN, event_channel

log = logging.getLogger(__name__)

CHANNEL_PREFIX = event_channel("")
# Events one stream may have waiting; a client that falls further behind loses its stream (and
# reconnects) rather than growing the process.
BACKLOG = 1000
# The subscription came back after a loss: events may have been missed meanwhile.
RESUBSCRIBED = object()
QUIET = object()            # no event within the time a listener waited
# The stream fell too far behind: it ends.
OVERFLOWED = object()


class TooManyStreams(Exception):
    pass


class Listener:
    """One open stream's share of the events: one job's, or every job's (job_id None)."""

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.queue: asyncio.Queue[object] = asyncio.Queue(BACKLOG)
        self.overflowed = False
        self.group: weakref.WeakSet[Listener] | None = None  # the hub's listeners it is one of
        self.release = lambda: None  # gives the stream's place back (once)

    def offer(self, item: object) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True

    def close(self) -> None:
        if self.group is not None:
            self.group.discard(self)
        self.release()

    async def next(self, timeout: float | None = None) -> object:
        """The next event's data (str), or RESUBSCRIBED, or OVERFLOWED; QUIET after `timeout` s without one."""
        if self.overflowed:
            return OVERFLOWED
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return QUIET
        return OVERFLOWED if self.overflowed else item


class EventHub:
    def __init__(self, redis: aioredis.Redis, max_streams_per_key: int) -> None:
        self.redis, self.max_streams_per_key = redis, max_streams_per_key
        self.open_streams: Counter[str] = Counter()
        self.listeners: dict[str | None, weakref.WeakSet[Listener]] = {}
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task | None = None

    def listen(self, key_name: str, job_id: str | None = None) -> Listener:
        """A place for one stream of `key_name`, or TooManyStreams. Its place is given back by its
        close(), or when it is dropped unread (a stream that never started)."""
        if self.open_streams[key_name] >= self.max_streams_per_key:
            raise TooManyStreams(f"the key {key_name!r} has {self.max_streams_per_key} event streams open on this "
                                 "API process (GEOQUEUE_API_MAX_STREAMS_PER_KEY); close one first")
        self.open_streams[key_name] += 1
        listener = Listener(job_id)
        listener.group = self.listeners.setdefault(job_id, weakref.WeakSet())
        listener.group.add(listener)
        # Also when the listener is dropped unclosed; the finalizer holds it weakly, so no cycle keeps it.
        listener.release = weakref.finalize(listener, self._release, key_name, job_id)
        return listener

    def _release(self, key_name: str, job_id: str | None) -> None:
        self.open_streams[key_name] -= 1
        if self.open_streams[key_name] <= 0:
            del self.open_streams[key_name]
        if job_id is not None and not self.listeners.get(job_id):
            self.listeners.pop(job_id, None)

    async def ready(self, timeout: float = 10.0) -> None:
        """Once the subscription is in place: an event published from now on reaches every listener."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._subscribe())
        await asyncio.wait_for(self.subscribed.wait(), timeout)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _subscribe(self) -> None:
        delay, was_subscribed = 0.5, False
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.psubscribe(EVENTS_PATTERN)
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage":
                            self._deliver(message["channel"], message["data"])
                        elif message["type"] == "psubscribe":
                            if was_subscribed:
                                self._broadcast(RESUBSCRIBED)
                            was_subscribed, delay = True, 0.5
                            self.subscribed.set()
            except Exception as exc:  # Redis away: every stream stays open and hears of the gap once it is back
                log.warning("event subscription lost (%s); subscribing again in %.1fs", exc, delay)
            self.subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _deliver(self, channel: str, data: str) -> None:
        job_id = channel[len(CHANNEL_PREFIX):]
        for listener in [*self.listeners.get(job_id, ()), *self.listeners.get(None, ())]:
            listener.offer(data)

    def _broadcast(self, item: object) -> None:
        for listeners in list(self.listeners.values()):
            for listener in list(listeners):
                listener.offer(item)
