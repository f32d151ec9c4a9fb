"""What a harvest or an upload has done, in Redis, so a task that runs again skips it."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from geoqueue.ledger import RECORD_TTL_SECONDS
from geoqueue.ledger_keys import job_key

CHECKPOINT_TTL = RECORD_TTL_SECONDS
FINISHED_CHECKPOINT_TTL = 3600         # kept a little after the job, for a late duplicate finisher


# Store a checkpoint once and count it the first time only. KEYS: a hash (or set), the counters hash.
# ARGV: member, value ('' to add the member to a set), ttl, then pairs of counter and amount.
_RECORD_ONCE = """
local new
if ARGV[2] == '' then new = redis.call('SADD', KEYS[1], ARGV[1])
else new = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if new == 1 then
  for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return new
"""


class HarvestCheckpoints:
    """What a harvest has done, so a task that runs again skips it. Each write happens once
    (a repeat changes nothing) and bumps the job's counters the first time.

        gq:job:<id>:mly:tiles       hash z/x/y -> {"children": [[z, x, y]...], "sequences": [...]}
        gq:job:<id>:mly:image_ids   hash sequence -> [image ids in capture order]
        gq:job:<id>:mly:batches     hash sequence/n -> {"rows": [[id, {field: value}]...], "missing": [ids]}
        gq:job:<id>:mly:present     set of image ids found at the destination when the job began
        gq:job:<id>:mly:downloaded  set of image ids at the destination: downloaded, or skipped as present
        gq:job:<id>:mly:counts      hash counter -> number
    """

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self.redis = client
        base = f"{job_key(job_id)}:mly"
        self.tiles_key, self.ids_key, self.batches_key = f"{base}:tiles", f"{base}:image_ids", f"{base}:batches"
        self.downloaded_key, self.counts_key = f"{base}:downloaded", f"{base}:counts"
        self.present_key = f"{base}:present"
        self._record_once = client.register_script(_RECORD_ONCE)

    def _record(self, key: str, member: str, value: Any, **counters: int) -> bool:
        encoded = "" if value is None else json.dumps(value, separators=(",", ":"))
        pairs = [part for name, amount in counters.items() for part in (name, amount)]
        return self._record_once(keys=[key, self.counts_key], args=[member, encoded, CHECKPOINT_TTL, *pairs]) == 1

    def _get(self, key: str, member: str) -> Any:
        raw = self.redis.hget(key, member)
        return None if raw is None else json.loads(raw)

    @staticmethod
    def tile_name(tile: tuple[int, int, int]) -> str:
        return "/".join(map(str, tile))

    def tile(self, tile: tuple[int, int, int]) -> dict | None:
        return self._get(self.tiles_key, self.tile_name(tile))

    def save_tile(self, tile: tuple[int, int, int], outcome: dict) -> None:
        self._record(self.tiles_key, self.tile_name(tile), outcome, tiles=1)

    def image_ids(self, sequence_id: str) -> list[str] | None:
        return self._get(self.ids_key, sequence_id)

    def save_image_ids(self, sequence_id: str, image_ids: list[str]) -> None:
        self._record(self.ids_key, sequence_id, image_ids, sequences_listed=1, images_listed=len(image_ids))

    def batch(self, sequence_id: str, number: int) -> dict | None:
        return self._get(self.batches_key, f"{sequence_id}/{number}")

    def save_batch(self, sequence_id: str, number: int, batch: dict) -> None:
        self._record(self.batches_key, f"{sequence_id}/{number}", batch, batches=1,
                     metadata_fetched=len(batch["rows"]), images_missing=len(batch["missing"]))

    def _members_among(self, key: str, image_ids: list[str]) -> set[str]:
        if not image_ids:
            return set()
        flags = self.redis.smismember(key, image_ids)
        return {image_id for image_id, member in zip(image_ids, flags, strict=True) if member}

    def downloaded_among(self, image_ids: list[str]) -> set[str]:
        return self._members_among(self.downloaded_key, image_ids)

    def mark_downloaded(self, image_id: str) -> None:
        self._record(self.downloaded_key, image_id, None, images_downloaded=1)

    def note_present(self, image_ids: list[str]) -> None:
        """Images at the destination before the job; counted only if the harvest meets them."""
        if image_ids:
            self.redis.sadd(self.present_key, *image_ids)
            self.redis.expire(self.present_key, CHECKPOINT_TTL)

    def skip_present(self, image_ids: list[str]) -> None:
        """Those of these images that were at the destination are done, each counted once as skipped."""
        for image_id in sorted(self._members_among(self.present_key, image_ids)):
            self._record(self.downloaded_key, image_id, None, images_already_present=1)

    def counts(self) -> dict[str, int]:
        return {name: int(value) for name, value in self.redis.hgetall(self.counts_key).items()}

    def all_image_ids(self) -> dict[str, list[str]]:
        return {seq: json.loads(ids) for seq, ids in self.redis.hgetall(self.ids_key).items()}

    def all_batches(self) -> dict[tuple[str, int], dict]:
        batches = {}
        for name, raw in self.redis.hgetall(self.batches_key).items():
            sequence_id, _, number = name.rpartition("/")
            batches[(sequence_id, int(number))] = json.loads(raw)
        return batches

    def expire(self, seconds: int) -> None:
        for key in (self.tiles_key, self.ids_key, self.batches_key, self.present_key, self.downloaded_key,
                    self.counts_key):
            self.redis.expire(key, seconds)


class UploadRecords:
    """An upload's plan, made once (a redelivered start reuses it and its sequence uuids), and where
    each image goes, so that an image's task reads its own entry rather than the whole plan.

        gq:job:<id>:mly:upload         hash: plan (JSON), protocol, bucket
        gq:job:<id>:mly:upload_images  hash image key -> {"sequence": n, "name": file name, "uuid": sequence uuid}
    """

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self.redis = client
        base = f"{job_key(job_id)}:mly"
        self.plan_key, self.images_key = f"{base}:upload", f"{base}:upload_images"

    def plan_once(self, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if not self.redis.hexists(self.plan_key, "plan"):
            self.redis.hsetnx(self.plan_key, "plan", json.dumps(make()))
        plan = self.plan()
        placements = {key: json.dumps({"sequence": n, "name": name, "uuid": sequence["uuid"]})
                      for n, sequence in enumerate(plan["sequences"]) for key, name in sequence["images"]}
        pipe = self.redis.pipeline()
        pipe.hset(self.plan_key, mapping={"protocol": plan["protocol"], "bucket": plan["bucket"]})
        pipe.hset(self.images_key, mapping=placements)
        pipe.expire(self.plan_key, CHECKPOINT_TTL)
        pipe.expire(self.images_key, CHECKPOINT_TTL)
        pipe.execute()
        return plan

    def plan(self) -> dict[str, Any]:
        return json.loads(self.redis.hget(self.plan_key, "plan"))

    def protocol_and_bucket(self) -> tuple[str, str]:
        protocol, bucket = self.redis.hmget(self.plan_key, "protocol", "bucket")
        return protocol, bucket

    def placement(self, key: str) -> dict[str, Any]:
        return json.loads(self.redis.hget(self.images_key, key))
