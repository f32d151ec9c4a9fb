"""The broker's queues as Redis holds them (kombu's Redis transport): how many messages wait in
each, and whether a task's message is anywhere in the broker.

    <queue>, <queue>\\x06\\x16<p>    lists: messages waiting (p: priority 1..9)
    unacked                        hash: delivery tag -> message delivered to a worker, not yet acked
"""
from __future__ import annotations

import re

import redis

from geoqueue.routes import QUEUES

PRIORITY_SEPARATOR = "\x06\x16"
UNACKED_KEY = "unacked"
SCAN_LIMIT = 50_000      # messages read at most to find one task's; past that it is taken to be there
BATCH = 1000


def queue_keys(queue: str) -> list[str]:
    return [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in range(1, 10))]


def depths(client: redis.Redis) -> dict[str, int]:
    pipe = client.pipeline()
    for queue in QUEUES:
        for key in queue_keys(queue):
            pipe.llen(key)
    counts = pipe.execute()
    per_queue = len(queue_keys(QUEUES[0]))
    return {q: sum(counts[i * per_queue:(i + 1) * per_queue]) for i, q in enumerate(QUEUES)}


def holds_message(client: redis.Redis, task_id: str) -> bool:
    """Whether the broker holds a message of this task id, waiting or delivered (or may: a queue too
    long to read through counts as holding it)."""
    wanted = re.compile(rf'"id":\s*"{re.escape(task_id)}"')
    read = 0
    for queue in QUEUES:
        for key in queue_keys(queue):
            for start in range(0, client.llen(key), BATCH):
                if read > SCAN_LIMIT:
                    return True
                chunk = client.lrange(key, start, start + BATCH - 1)
                read += len(chunk)
                if any(wanted.search(_text(message)) for message in chunk):
                    return True
    return any(wanted.search(_text(message)) for message in client.hvals(UNACKED_KEY))


def _text(message: bytes | str) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else message
