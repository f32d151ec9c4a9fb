"""Idempotency-Key: the same key with the same body names the same job; with another body, 409.

The key is scoped to the API key that sent it, and kept GEOQUEUE_API_IDEMPOTENCY_TTL seconds.
The job id is chosen when the key is first claimed, so a retry after a crash between the claim
and the enqueue finishes the same job (GeoQueue.submit sends a job whose message was never sent).
"""
from __future__ import annotations

import hashlib
import json

import redis

from api.errors import ApiError
from geoqueue.job_record import canonical, new_job_id

MAX_KEY_LENGTH = 255


def claim(client: redis.Redis, caller: str, key: str, body: dict, ttl: int) -> tuple[str, bool]:
    """(job id, replayed): the job this key names, made up now on its first use."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError(422, "InvalidParams", f"Idempotency-Key: 1 to {MAX_KEY_LENGTH} characters",
                       field="Idempotency-Key")
    slot = "gq:idempotency:" + hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(canonical(body).encode()).hexdigest()
    job_id = body.get("job_id") or new_job_id()
    if client.set(slot, json.dumps({"body": fingerprint, "job_id": job_id}), nx=True, ex=ttl):
        return job_id, False
    stored = json.loads(client.get(slot) or "{}")
    if stored.get("body") != fingerprint:
        raise ApiError(409, "IdempotencyConflict", "this Idempotency-Key was used with another body",
                       field="Idempotency-Key")
    return stored["job_id"], True
