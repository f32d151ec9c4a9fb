"""Mapillary jobs: harvest an organization's (or a creator's) imagery in a bounding box; upload images as sequences.

    mapillary.harvest          {"organization_id" | "creator_id": "…", "bbox": [min_lon, min_lat, max_lon, max_lat],
                                "destination": "s3://b/harvest/", "fields"?: [...], "quality"?: "256",
                                "max_parallel"?: 8}
    mapillary.upload_sequence  {"images": "s3://b/photos/", "organization_id"?: "…", "max_parallel"?: 8}

A harvest is the toolset's four steps (facts/mapillary.md §2) as one job, one task per arrow:

    harvest               coverage tiles over the bbox, drilled down to z14 only into tiles that hold the
                          owner; the owner's sequences with images in the bbox, `max_parallel` at a time:
    -> transfer.sequence  the sequence's image ids, their metadata in batches of 50, and each batch's
                          downloads with the thumbnail URLs that batch just returned; the task that
                          records the last sequence writes the three CSV datasets

Everything done is checkpointed in Redis per tile, sequence, batch and image (`HarvestCheckpoints`),
so a task that runs again after a crash or a retry starts where the last one stopped. Graph and
tile calls take their slot from fleet-wide limits per token (workers/rate_limit.py).

An upload checks every image's EXIF, splits the good ones into sequences (tasks/mapillary_sequences.py)
and uploads each image once, with the protocol GEOQUEUE_MAPILLARY_UPLOAD_PROTOCOL names:

    upload_sequence          EXIF of every image (the reasons for the rejected ones), the plan of sequences
    -> transfer.upload_image one image, `max_parallel` at a time: an offset-resumable session keyed by the
                             image's md5, or the legacy form POST to {username}/{sequence uuid}/{file name};
                             the task that records the last image closes every sequence (an image manifest
                             and finish_upload, or the legacy DONE object), each once
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

import redis

from geoqueue import jobs
from geoqueue.s3ref import S3Ref
from tasks.mapillary_exif import EXIF_HEAD_BYTES, Geotag, Rejected, read_geotag
from tasks.mapillary_sequences import Placed, split_sequences
from vendors.errors import TransientError, VendorError
from vendors.http import new_session
from vendors.mapillary import (
    IMAGE_ZOOM,
    MAX_IDS_PER_BATCH,
    SEQUENCE_MIN_ZOOM,
    THUMBNAIL_RESOLUTIONS,
    CoverageTile,
    ExpiredUrl,
    LegacyUploadCredentials,
    MapillaryClient,
    MapillaryNotFound,
    bbox_intersects,
    child_tiles,
    in_bbox,
    lonlat_to_tile,
    tile_bounds,
    tiles_covering_bbox,
    upload_session_key,
)
from workers import app
from workers.fanout import Fanout
from workers.inputs import prefix_ref
from workers.jobtask import (
    PENDING,
    BudgetExceeded,
    InvalidInput,
    JobCanceled,
    JobContext,
    JobError,
    JobTask,
    error_dict,
    job_task,
    publish_progress,
    retry_delay,
    retry_or_raise,
)
from workers.rate_limit import (
    Budget,
    FleetLimitReached,
    FleetRateLimiter,
    Rate,
    RateLimitedAdapter,
)
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.storage import ObjectStore, get_store

SEQUENCE_TASK = "mapillary.transfer.sequence"
UPLOAD_TASK = "mapillary.transfer.upload_image"

IMAGE_FIELDS = frozenset({
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at", "compass_angle",
    "computed_altitude", "computed_compass_angle", "computed_geometry", "computed_rotation", "creator", "detections",
    "exif_orientation", "geometry", "height", "is_pano", "make", "merge_cc", "mesh", "model", "quality_score",
    "sequence", "sfm_cluster", "width", "thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url",
})
OWNER_FIELDS = ("organization_id", "creator_id")
SEQUENCE_DATASET, IMAGE_DATASET, METADATA_DATASET = "seq_dataset.csv", "img_dataset.csv", "img_meta_dataset.csv"
IMAGES_FOLDER = "downloaded_images"    # the toolset's image_downloads_folder
START_TILES = 4                        # drilling starts at the deepest zoom where this many tiles cover the bbox
MAX_PARALLEL = 64
MISSING_SHOWN = 1000                   # ids of vanished images listed in a result (all are counted)
RATE_WAIT_INLINE_S = 10.0              # longer waits for a fleet-wide slot retry the task instead
TILE_BUDGET_PERIOD_S = 86_400.0
CHECKPOINT_TTL = jobs.RECORD_TTL_SECONDS
FINISHED_CHECKPOINT_TTL = 3600         # kept a little after the job, for a late duplicate finisher
CHECK_THREADS = 8                      # concurrent S3 reads of image headers while planning an upload
RESUMABLE, LEGACY = "resumable", "legacy"


# --- the vendor, configured from settings ---
def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


def token_fingerprint(token: str) -> str:
    """Names the token in Redis keys without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def limited_session(graph_url: str, tiles_url: str, token: str):
    """An HTTP session whose Graph and tile requests take a slot of the fleet-wide limits of this token:
    search (GET /images) and entity calls per minute, coverage tiles per UTC day."""
    s, limiter = get_settings(), FleetRateLimiter(get_redis())
    name = f"mapillary:{token_fingerprint(token)}"
    session = new_session()
    # requests picks the longest mounted prefix, so /images goes to search and the rest of Graph to entity.
    session.mount(f"{graph_url}/images", RateLimitedAdapter(
        limiter, f"{name}:search", Rate.per_minute(s.mapillary_search_per_minute), RATE_WAIT_INLINE_S))
    session.mount(f"{graph_url}/", RateLimitedAdapter(
        limiter, f"{name}:entity", Rate.per_minute(s.mapillary_entity_per_minute), RATE_WAIT_INLINE_S))
    session.mount(f"{tiles_url}/", RateLimitedAdapter(
        limiter, f"{name}:tiles", Budget(s.mapillary_tiles_per_day, TILE_BUDGET_PERIOD_S), RATE_WAIT_INLINE_S))
    return session


@functools.lru_cache(maxsize=1)
def client() -> MapillaryClient:
    """One client per worker process, so connections are reused."""
    s = get_settings()
    token = _secret(s.mapillary_token)
    if not token:
        raise JobError("the Mapillary access token is not configured (GEOQUEUE_MAPILLARY_TOKEN)")
    graph_url, tiles_url = s.mapillary_graph_url.rstrip("/"), s.mapillary_tiles_url.rstrip("/")
    return MapillaryClient(graph_url, tiles_url, s.mapillary_upload_url, token, timeout=s.mapillary_timeout,
                           legacy_upload_url=s.mapillary_legacy_upload_url,
                           session=limited_session(graph_url, tiles_url, token))


def upload_protocol() -> str:
    protocol = get_settings().mapillary_upload_protocol
    if protocol not in (RESUMABLE, LEGACY):
        raise JobError(f"GEOQUEUE_MAPILLARY_UPLOAD_PROTOCOL must be {RESUMABLE} or {LEGACY}, not {protocol!r}")
    if protocol == LEGACY:
        legacy_credentials()
    return protocol


def legacy_credentials() -> LegacyUploadCredentials:
    s = get_settings()
    values = (s.mapillary_username, _secret(s.mapillary_permission_hash), _secret(s.mapillary_signature_hash))
    if not all(values):
        raise JobError("legacy uploads need GEOQUEUE_MAPILLARY_USERNAME, GEOQUEUE_MAPILLARY_PERMISSION_HASH "
                       "and GEOQUEUE_MAPILLARY_SIGNATURE_HASH")
    return LegacyUploadCredentials(*values)


# --- checking parameters, before any vendor call ---


def check_id(value: Any, field: str) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isdigit():
        raise InvalidInput(f"{field}: must be a numeric Mapillary id, got {value!r}", field=field)
    return text


def check_bbox(value: Any) -> tuple[float, float, float, float]:
    numbers = value if isinstance(value, (list, tuple)) else ()
    if len(numbers) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                    for v in numbers):
        raise InvalidInput(f"bbox: must be [min_lon, min_lat, max_lon, max_lat], got {value!r}", field="bbox")
    west, south, east, north = (float(v) for v in numbers)
    if not (-180 <= west < east <= 180 and -85.0511 <= south < north <= 85.0511):
        raise InvalidInput(f"bbox: {value!r} is not min_lon < max_lon within ±180 and min_lat < max_lat "
                           "within ±85.0511 (web mercator)", field="bbox")
    return west, south, east, north


def check_fields(value: Any, url_field: str) -> tuple[str, ...]:
    """The Graph image fields asked for; the toolset's columns by default."""
    if value is None:
        return ("captured_at", "compass_angle", url_field, "width")
    if not isinstance(value, (list, tuple)) or not all(isinstance(f, str) and f for f in value):
        raise InvalidInput(f"fields: must be a list of image field names, got {value!r}", field="fields")
    unknown = sorted({f for f in value if f.split(".", 1)[0] not in IMAGE_FIELDS})
    if unknown:
        raise InvalidInput(f"fields: unknown image field(s) {', '.join(unknown)} (known: {', '.join(sorted(IMAGE_FIELDS))})",
                           field="fields")
    return tuple(f for f in dict.fromkeys(value) if f not in ("id", "sequence"))   # those are img_id and seq_id


def check_parallel(value: Any) -> int:
    if value is None:
        return get_settings().mapillary_max_parallel
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise InvalidInput(f"max_parallel: must be a whole number from 1 to {MAX_PARALLEL}, got {value!r}",
                           field="max_parallel")
    return value


@dataclass(frozen=True)
class HarvestPlan:
    owner_field: str                 # organization_id or creator_id, as the tiles name it
    owner_id: str
    bbox: tuple[float, float, float, float]
    destination: S3Ref
    quality: str
    fields: tuple[str, ...]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "HarvestPlan":
        owners = [f for f in OWNER_FIELDS if params.get(f) is not None]
        if len(owners) != 1:
            raise InvalidInput("give exactly one of organization_id and creator_id", field="organization_id")
        quality = str(params.get("quality", "256"))
        if quality not in THUMBNAIL_RESOLUTIONS:
            raise InvalidInput(f"quality: must be one of {', '.join(THUMBNAIL_RESOLUTIONS)}, got {quality!r}",
                               field="quality")
        return cls(owners[0], check_id(params[owners[0]], owners[0]), check_bbox(params.get("bbox")),
                   prefix_ref(params.get("destination"), "destination"), quality,
                   check_fields(params.get("fields"), f"thumb_{quality}_url"))

    @property
    def url_field(self) -> str:
        return f"thumb_{self.quality}_url"

    @property
    def request_fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.fields, self.url_field)))

    @property
    def images_prefix(self) -> S3Ref:
        return self.destination.child(f"{IMAGES_FOLDER}/")

    def image_ref(self, image_id: str) -> S3Ref:
        return self.destination.child(f"{IMAGES_FOLDER}/{image_id}_{self.quality}.jpg")

    def dataset_ref(self, name: str) -> S3Ref:
        return self.destination.child(name)

    def owns(self, feature) -> bool:
        return getattr(feature, self.owner_field) == self.owner_id


# --- checkpoints ---

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
        gq:job:<id>:mly:downloaded  set of image ids at the destination
        gq:job:<id>:mly:counts      hash counter -> number
    """

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self.redis = client
        base = f"{jobs.job_key(job_id)}:mly"
        self.tiles_key, self.ids_key, self.batches_key = f"{base}:tiles", f"{base}:image_ids", f"{base}:batches"
        self.downloaded_key, self.counts_key = f"{base}:downloaded", f"{base}:counts"
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

    def downloaded_among(self, image_ids: list[str]) -> set[str]:
        if not image_ids:
            return set()
        flags = self.redis.smismember(self.downloaded_key, image_ids)
        return {image_id for image_id, present in zip(image_ids, flags) if present}

    def mark_downloaded(self, image_id: str) -> None:
        self._record(self.downloaded_key, image_id, None, images_downloaded=1)

    def mark_present(self, image_id: str) -> None:
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
        for key in (self.tiles_key, self.ids_key, self.batches_key, self.downloaded_key, self.counts_key):
            self.redis.expire(key, seconds)


def harvest_phase(counts: dict[str, int]) -> str:
    """The progress line: tiles, sequences, images listed, metadata fetched, images downloaded."""
    present = counts.get("images_already_present", 0)
    return (f"tiles {counts.get('tiles', 0)}, sequences listed {counts.get('sequences_listed', 0)}, "
            f"images listed {counts.get('images_listed', 0)}, metadata {counts.get('metadata_fetched', 0)}, "
            f"downloaded {counts.get('images_downloaded', 0)}" + (f" (+{present} already there)" if present else ""))


# --- the shared shape of a fan-out item ---
def item_outcome(task, work: Callable[[], dict]) -> dict:
    """Run an item's work: its outcome, or a retry for a transient failure while retries remain."""
    try:
        return {"state": "succeeded", **work()}
    except TransientError as exc:
        if task.request.retries < get_settings().max_retries:
            raise task.retry(exc=exc, countdown=retry_delay(task.request.retries, exc.retry_after),
                             max_retries=get_settings().max_retries)
        return {"state": "failed", "error": error_dict(exc)}
    except (VendorError, JobError) as exc:
        return {"state": "failed", "error": error_dict(exc)}


def run_item(task, job_id: str, item: str, work: Callable[[jobs.Job, str], dict],
             dispatch: Callable[[str, str], None], finish: Callable[[str], None],
             phase: Callable[[str], str]) -> dict:
    """One fan-out item: skipped when its job is over or its outcome is recorded; otherwise its
    outcome is recorded once. Whoever sees every outcome recorded finishes the job, a redelivered
    message too, so a finisher killed midway is replaced."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return {"job_id": job_id, "item": item, "skipped": True}
    fanout = Fanout(get_redis(), ledger)
    state = "recorded earlier"
    if ledger.item_is_recorded(job_id, item):
        # The run that recorded it may have died before taking it off the in-flight window and
        # dispatching the next item: redo that bookkeeping (recording again changes nothing).
        fanout.finish_item(job_id, item, ledger.items(job_id)[item], dispatch)
    else:
        try:
            outcome = item_outcome(task, lambda: work(job, item))
        except JobCanceled:
            return {"job_id": job_id, "item": item, "skipped": True}
        fanout.finish_item(job_id, item, outcome, dispatch)
        state = outcome["state"]
        report_progress(task, job_id, phase(job_id))
    if fanout.complete(job_id):
        try:
            finish(job_id)
        except TransientError as exc:
            retry_or_raise(task, exc)
            ledger.transition(job_id, jobs.FAILED, error=error_dict(exc))
        except (VendorError, JobError) as exc:
            ledger.transition(job_id, jobs.FAILED, error=error_dict(exc))
        except Exception as exc:
            # Nothing would finish the job later: every item has its outcome, this message is acked.
            ledger.transition(job_id, jobs.FAILED, error=error_dict(exc))
            raise
    return {"job_id": job_id, "item": item, "state": state}


def report_progress(task, job_id: str, phase: str) -> None:
    """The phase line; done/total stay the fan-out's count of finished items."""
    ledger = get_ledger()
    ledger.progress(job_id, phase)
    job = ledger.get(job_id)
    publish_progress(task, job_id, phase, job.done, job.total)


def stop_if_finished(job_id: str) -> None:
    job = get_ledger().get(job_id)
    if job is None or job.finished:
        raise JobCanceled(job_id)


# --- harvest: tiles ---
def start_zoom(bbox: tuple[float, float, float, float]) -> int:
    """The deepest zoom at which a few tiles cover the bbox: drilling from there prunes empty areas
    without fetching coarse tiles that prune nothing. Never above z6, where the sequence layer
    (the first with organization ids) begins."""
    west, south, east, north = bbox
    for z in range(IMAGE_ZOOM, SEQUENCE_MIN_ZOOM, -1):
        x0, y0 = lonlat_to_tile(west, north, z)
        x1, y1 = lonlat_to_tile(east, south, z)
        if (x1 - x0 + 1) * (y1 - y0 + 1) <= START_TILES:
            return z
    return SEQUENCE_MIN_ZOOM


def explore_tile(coverage: CoverageTile, plan: HarvestPlan) -> dict:
    """Where to go from a tile: its children that meet the bbox while above z14, or at z14 the
    owner's sequences with an image in the bbox (the toolset's seq_dataset)."""
    if not any(plan.owns(f) for f in (*coverage.sequences, *coverage.images)):
        return {"children": [], "sequences": []}
    if coverage.z < IMAGE_ZOOM:
        children = [c for c in child_tiles(coverage.z, coverage.x, coverage.y)
                    if bbox_intersects(tile_bounds(*c), plan.bbox)]
        return {"children": children, "sequences": []}
    sequences = {i.sequence_id for i in coverage.images if plan.owns(i) and in_bbox(i.lon, i.lat, plan.bbox)}
    return {"children": [], "sequences": sorted(sequences)}


def fetch_tile(vendor: MapillaryClient, tile: tuple[int, int, int]) -> CoverageTile:
    try:
        return vendor.coverage_tile(*tile)
    except FleetLimitReached as exc:
        if (exc.retry_after or 0) > get_settings().retry_backoff_max:
            renews = datetime.now(timezone.utc) + timedelta(seconds=exc.retry_after)
            raise BudgetExceeded(f"the daily budget of {get_settings().mapillary_tiles_per_day} coverage tiles for "
                                 f"this token is spent; it renews at {renews:%Y-%m-%d %H:%M} UTC") from exc
        raise


def discover_sequences(job: JobContext, vendor: MapillaryClient, plan: HarvestPlan,
                       checkpoints: HarvestCheckpoints) -> list[str]:
    pending = tiles_covering_bbox(plan.bbox, start_zoom(plan.bbox))
    sequences: set[str] = set()
    visited = 0
    while pending:
        tile = tuple(pending.pop())
        outcome = checkpoints.tile(tile)
        if outcome is None:
            job.check_canceled()
            outcome = explore_tile(fetch_tile(vendor, tile), plan)
            checkpoints.save_tile(tile, outcome)
        pending.extend(tuple(child) for child in outcome["children"])
        sequences.update(outcome["sequences"])
        visited += 1
        job.progress(f"tiles {visited} of {visited + len(pending)} so far, sequences found {len(sequences)}")
    return sorted(sequences)


def note_existing_images(store: ObjectStore, plan: HarvestPlan, checkpoints: HarvestCheckpoints) -> None:
    """Images at the destination already (an earlier harvest) are not downloaded again."""
    suffix = f"_{plan.quality}.jpg"
    for ref, size in store.list(plan.images_prefix):
        name = ref.name
        if size and name.endswith(suffix) and name[:-len(suffix)].isdigit():
            checkpoints.mark_present(name[:-len(suffix)])


# --- harvest: one sequence ---
def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def fetch_batch(vendor: MapillaryClient, plan: HarvestPlan, image_ids: list[str]) -> dict:
    """Metadata of up to 50 images. One id that no longer exists fails a batch at the vendor; the
    client then asks again without it (one id at a time when the vendor does not say which)."""
    found, missing = vendor.get_images_skipping_missing(image_ids, plan.request_fields)
    rows = [[i, {k: v for k, v in found[i].items() if k != "id"}] for i in image_ids if i in found]
    return {"rows": rows, "missing": missing}


def save_thumbnail(vendor: MapillaryClient, store: ObjectStore, plan: HarvestPlan, image_id: str, url: str) -> None:
    buffer = io.BytesIO()
    vendor.download(url, buffer)
    store.write(plan.image_ref(image_id), buffer.getvalue(), "image/jpeg")


def fresh_urls(vendor: MapillaryClient, plan: HarvestPlan, image_ids: list[str]) -> dict[str, str | None]:
    found, _ = vendor.get_images_skipping_missing(image_ids, [plan.url_field])
    return {image_id: found.get(image_id, {}).get(plan.url_field) for image_id in image_ids}


def download_batch(vendor: MapillaryClient, store: ObjectStore, plan: HarvestPlan, batch: dict,
                   checkpoints: HarvestCheckpoints) -> list[str]:
    """Download the batch's images not at the destination yet; returns the ids that have no URL.
    The batch's URLs were fetched moments ago, unless this run resumes an earlier one: when the
    CDN refuses one as expired, the rest of the batch gets fresh URLs in one call."""
    urls = {image_id: meta.get(plan.url_field) for image_id, meta in batch["rows"]}
    done = checkpoints.downloaded_among(list(urls))
    wanted = [image_id for image_id in urls if image_id not in done]
    without_url = []
    for position, image_id in enumerate(wanted):
        if not urls[image_id]:
            without_url.append(image_id)
            continue
        try:
            save_thumbnail(vendor, store, plan, image_id, urls[image_id])
        except ExpiredUrl:
            urls.update(fresh_urls(vendor, plan, wanted[position:]))
            if not urls[image_id]:
                without_url.append(image_id)
                continue
            save_thumbnail(vendor, store, plan, image_id, urls[image_id])
        checkpoints.mark_downloaded(image_id)
    return without_url


def harvest_one_sequence(job: jobs.Job, sequence_id: str) -> dict:
    plan, vendor, store = HarvestPlan.from_params(job.params), client(), get_store()
    checkpoints = HarvestCheckpoints(get_redis(), job.id)
    image_ids = checkpoints.image_ids(sequence_id)
    if image_ids is None:
        try:
            image_ids = vendor.image_ids_of_sequence(sequence_id)
        except MapillaryNotFound:
            return {"sequence": sequence_id, "images": 0, "sequence_gone": True}
        checkpoints.save_image_ids(sequence_id, image_ids)
    missing, without_url = [], []
    for number, image_batch in enumerate(chunks(image_ids, MAX_IDS_PER_BATCH)):
        stop_if_finished(job.id)
        batch = checkpoints.batch(sequence_id, number)
        if batch is None:
            batch = fetch_batch(vendor, plan, image_batch)
            checkpoints.save_batch(sequence_id, number, batch)
        missing += batch["missing"]
        without_url += download_batch(vendor, store, plan, batch, checkpoints)
    return {"sequence": sequence_id, "images": len(image_ids), "missing_images": missing,
            "without_thumbnail": without_url}


# --- harvest: the datasets ---
def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def write_csv(store: ObjectStore, ref: S3Ref, header: list[str], rows: Iterable[list[Any]]) -> None:
    """Stream rows into the object through a spooled file (memory stays bounded for big harvests)."""
    with tempfile.SpooledTemporaryFile(max_size=16 * 2 ** 20) as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.detach()    # flushes into the spool and leaves it open for the upload
        spool.seek(0)
        store.upload_stream(ref, spool, "text/csv")


def write_datasets(store: ObjectStore, plan: HarvestPlan, sequences: list[str],
                   checkpoints: HarvestCheckpoints) -> dict[str, str]:
    """The toolset's three CSVs, same names and columns: seq_dataset (org_id, seq_id), img_dataset
    (seq_id, img_id) and img_meta_dataset (seq_id, img_id, then the fields asked for)."""
    image_ids, batches = checkpoints.all_image_ids(), checkpoints.all_batches()

    def metadata_rows() -> Iterator[list[Any]]:
        for sequence_id in sequences:
            for number in range(math.ceil(len(image_ids.get(sequence_id, [])) / MAX_IDS_PER_BATCH)):
                # A sequence that failed midway has no checkpoint for its later batches.
                for image_id, meta in batches.get((sequence_id, number), {"rows": []})["rows"]:
                    yield [sequence_id, image_id, *(cell(meta.get(f.split(".", 1)[0])) for f in plan.fields)]

    datasets = {
        SEQUENCE_DATASET: (["org_id", "seq_id"], ([plan.owner_id, s] for s in sequences)),
        IMAGE_DATASET: (["seq_id", "img_id"], ([s, i] for s in sequences for i in image_ids.get(s, []))),
        METADATA_DATASET: (["seq_id", "img_id", *plan.fields], metadata_rows()),
    }
    for name, (header, rows) in datasets.items():
        write_csv(store, plan.dataset_ref(name), header, rows)
    return {name: plan.dataset_ref(name).uri for name in datasets} | {"images": plan.images_prefix.uri}


def finish_harvest(job_id: str) -> None:
    """Every sequence has an outcome: write the datasets and end the job."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return
    plan = HarvestPlan.from_params(job.params)
    checkpoints = HarvestCheckpoints(get_redis(), job_id)
    outcomes = ledger.items(job_id)
    failed = {seq: o["error"] for seq, o in outcomes.items() if o["state"] != "succeeded"}
    result = harvest_result(plan, outcomes, checkpoints.counts(),
                            write_datasets(get_store(), plan, sorted(outcomes), checkpoints))
    Fanout(get_redis(), ledger).finish(job_id, result, failed and {
        "type": "SomeSequencesFailed", "message": f"{len(failed)} of {len(outcomes)} sequences failed: "
                                                  f"{', '.join(sorted(failed)[:10])}", "sequences": failed})
    checkpoints.expire(FINISHED_CHECKPOINT_TTL)


def harvest_result(plan: HarvestPlan, outcomes: dict[str, dict], counts: dict[str, int],
                   outputs: dict[str, str]) -> dict[str, Any]:
    missing = sorted(i for o in outcomes.values() for i in o.get("missing_images", []))
    return {
        plan.owner_field: plan.owner_id, "bbox": list(plan.bbox), "quality": plan.quality,
        "tiles": counts.get("tiles", 0), "sequences": len(outcomes),
        "images_listed": counts.get("images_listed", 0), "metadata_fetched": counts.get("metadata_fetched", 0),
        "images_downloaded": counts.get("images_downloaded", 0),
        "images_already_present": counts.get("images_already_present", 0),
        "images_missing": len(missing), "missing_image_ids": missing[:MISSING_SHOWN],
        "images_without_thumbnail": sorted(i for o in outcomes.values() for i in o.get("without_thumbnail", [])),
        "sequences_gone": sorted(s for s, o in outcomes.items() if o.get("sequence_gone")),
        "outputs": outputs,
    }


def dispatch_sequence(job_id: str, item: str) -> None:
    harvest_sequence.apply_async(kwargs={"job_id": job_id, "item": item})


@job_task(app, "mapillary.harvest")
def harvest(job: JobContext, bbox: Any = None, destination: Any = None, organization_id: Any = None,
            creator_id: Any = None, fields: Any = None, quality: Any = "256", max_parallel: Any = None) -> Any:
    """The owner's sequences with images in the bbox: image ids, metadata, thumbnails and the toolset's CSVs."""
    plan = HarvestPlan.from_params({"bbox": bbox, "destination": destination, "organization_id": organization_id,
                                    "creator_id": creator_id, "fields": fields, "quality": quality})
    parallel = check_parallel(max_parallel)
    vendor, checkpoints = client(), HarvestCheckpoints(get_redis(), job.id)
    note_existing_images(get_store(), plan, checkpoints)
    sequences = discover_sequences(job, vendor, plan, checkpoints)
    if not sequences:
        outputs = write_datasets(get_store(), plan, [], checkpoints)
        return harvest_result(plan, {}, checkpoints.counts(), outputs)
    job.progress(harvest_phase(checkpoints.counts()))
    Fanout(get_redis(), job.ledger).start(job.id, sequences, SEQUENCE_TASK, parallel, dispatch_sequence)
    return PENDING


@app.task(bind=True, base=JobTask, name=SEQUENCE_TASK)
def harvest_sequence(self, job_id: str, item: str) -> dict[str, Any]:
    """One sequence of a harvest: image ids, metadata batches, downloads (each step checkpointed)."""
    return run_item(self, job_id, item, harvest_one_sequence, dispatch_sequence, finish_harvest,
                    lambda j: harvest_phase(HarvestCheckpoints(get_redis(), j).counts()))


# --- upload: the plan ---
def upload_keys(job_id: str) -> tuple[str, str, str]:
    base = f"{jobs.job_key(job_id)}:mly"
    return f"{base}:upload", f"{base}:upload_images", f"{base}:closed"


def check_image(store: ObjectStore, ref: S3Ref, size: int) -> Geotag | str:
    """The image's geotag, or why it cannot be uploaded."""
    if size == 0:
        return "empty file"
    try:
        return read_geotag(store.head_bytes(ref, min(size, EXIF_HEAD_BYTES)))
    except Rejected as reason:
        return str(reason)


def make_upload_plan(job: JobContext, prefix: S3Ref, protocol: str) -> dict[str, Any]:
    store = get_store()
    objects = [(ref, size) for ref, size in store.list(prefix) if not ref.key.endswith("/")]
    if not objects:
        raise InvalidInput(f"images: nothing found under {prefix}", field="images")
    job.progress(f"checking EXIF of {len(objects)} images")
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        checked = list(pool.map(lambda found: check_image(store, *found), objects))
    rejected = {ref.uri: reason for (ref, _), reason in zip(objects, checked) if isinstance(reason, str)}
    placed = [Placed(ref.key, geotag) for (ref, _), geotag in zip(objects, checked) if isinstance(geotag, Geotag)]
    if not placed:
        raise InvalidInput(f"images: no image under {prefix} can be uploaded", field="images",
                           rejected=dict(list(rejected.items())[:MISSING_SHOWN]))
    split = split_sequences(placed)
    return {
        "protocol": protocol, "bucket": prefix.bucket, "images_found": len(objects), "rejected": rejected,
        "duplicates": {S3Ref(prefix.bucket, k).uri: f"near-duplicate of {S3Ref(prefix.bucket, v).uri}"
                       for k, v in split.duplicates.items()},
        "sequences": [{"uuid": str(uuid.uuid4()),
                       "images": [[p.name, p.name[len(prefix.key):].replace("/", "_")] for p in sequence],
                       "captured": [sequence[0].geotag.captured_at, sequence[-1].geotag.captured_at]}
                      for sequence in split.sequences],
    }


def stored_upload_plan(job: JobContext, prefix: S3Ref) -> dict[str, Any]:
    """The job's plan, made once: a redelivered start reuses it (and its sequence uuids)."""
    plan_key, images_key, _ = upload_keys(job.id)
    db = get_redis()
    if not db.hexists(plan_key, "plan"):
        db.hsetnx(plan_key, "plan", json.dumps(make_upload_plan(job, prefix, upload_protocol())))
    plan = json.loads(db.hget(plan_key, "plan"))
    placements = {key: json.dumps({"sequence": n, "name": name, "uuid": sequence["uuid"]})
                  for n, sequence in enumerate(plan["sequences"]) for key, name in sequence["images"]}
    pipe = db.pipeline()
    pipe.hset(plan_key, mapping={"protocol": plan["protocol"], "bucket": plan["bucket"]})
    pipe.hset(images_key, mapping=placements)
    pipe.expire(plan_key, CHECKPOINT_TTL)
    pipe.expire(images_key, CHECKPOINT_TTL)
    pipe.execute()
    return plan


# --- upload: one image ---
def upload_one_image(job: jobs.Job, key: str) -> dict:
    plan_key, images_key, _ = upload_keys(job.id)
    protocol, bucket = get_redis().hmget(plan_key, "protocol", "bucket")
    placement = json.loads(get_redis().hget(images_key, key))
    data = get_store().read(S3Ref(bucket, key))
    vendor = client()
    if protocol == RESUMABLE:
        # The session key is the content's md5: a second attempt resumes the same session.
        handle = vendor.upload(upload_session_key(data, ".jpg"), data, entity_type="image/jpeg")
        return {"sequence": placement["sequence"], "handle": handle}
    uploaded = vendor.legacy_upload(data, placement["name"], legacy_credentials(), placement["uuid"])
    return {"sequence": placement["sequence"], "key": uploaded}


def dispatch_upload(job_id: str, item: str) -> None:
    upload_image.apply_async(kwargs={"job_id": job_id, "item": item})


@job_task(app, "mapillary.upload_sequence")
def upload_sequence(job: JobContext, images: Any = None, organization_id: Any = None, max_parallel: Any = None) -> Any:
    """Images under a prefix with valid EXIF, split into sequences and uploaded, each image once."""
    prefix = prefix_ref(images, "images")
    if organization_id is not None:
        check_id(organization_id, "organization_id")
    parallel = check_parallel(max_parallel)
    plan = stored_upload_plan(job, prefix)
    keys = [key for sequence in plan["sequences"] for key, _ in sequence["images"]]
    job.progress(f"uploading {len(keys)} images in {len(plan['sequences'])} sequences "
                 f"({len(plan['rejected'])} rejected, {len(plan['duplicates'])} duplicates dropped)")
    Fanout(get_redis(), job.ledger).start(job.id, keys, UPLOAD_TASK, parallel, dispatch_upload)
    return PENDING


@app.task(bind=True, base=JobTask, name=UPLOAD_TASK)
def upload_image(self, job_id: str, item: str) -> dict[str, Any]:
    """One image of an upload, sent once; the last one closes the sequences."""
    return run_item(self, job_id, item, upload_one_image, dispatch_upload, finish_upload,
                    lambda j: "uploading images")


# --- upload: closing the sequences ---
def close_sequence(job: jobs.Job, number: int, sequence: dict, outcomes: dict[str, dict], protocol: str) -> dict:
    """Bundle a fully uploaded sequence (once, however often the job finishes): the image
    manifest and finish_upload, or the legacy DONE object."""
    _, _, closed_key = upload_keys(job.id)
    closed = get_redis().hget(closed_key, str(number))
    if closed is not None:
        return json.loads(closed)
    vendor = client()
    if protocol == RESUMABLE:
        handles = [outcomes[key]["handle"] for key, _ in sequence["images"]]
        closing = {"cluster_id": vendor.upload_image_bundle(handles, job.params.get("organization_id"))}
    else:
        closing = {"done_marker": vendor.legacy_finish_sequence(legacy_credentials(), sequence["uuid"])}
    get_redis().hset(closed_key, str(number), json.dumps(closing))
    get_redis().expire(closed_key, CHECKPOINT_TTL)
    return closing


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def finish_upload(job_id: str) -> None:
    """Every image has an outcome: close each sequence whose images all went up, then end the job."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return
    plan_key, _, _ = upload_keys(job_id)
    plan = json.loads(get_redis().hget(plan_key, "plan"))
    outcomes = ledger.items(job_id)
    sequences, failed = [], {}
    for number, sequence in enumerate(plan["sequences"]):
        keys = [key for key, _ in sequence["images"]]
        errors = {S3Ref(plan["bucket"], k).uri: outcomes[k]["error"] for k in keys if outcomes[k]["state"] != "succeeded"}
        summary = {"uuid": sequence["uuid"], "images": len(keys), "first_image": S3Ref(plan["bucket"], keys[0]).uri,
                   "captured_from": iso(sequence["captured"][0]), "captured_to": iso(sequence["captured"][1])}
        if errors:
            failed.update(errors)
            sequences.append(summary | {"state": "failed"})
        else:
            sequences.append(summary | {"state": "uploaded", **close_sequence(job, number, sequence, outcomes,
                                                                              plan["protocol"])})
    result = {"protocol": plan["protocol"], "images_found": plan["images_found"],
              "uploaded": sum(1 for o in outcomes.values() if o["state"] == "succeeded"),
              "rejected": plan["rejected"], "duplicates": plan["duplicates"], "sequences": sequences}
    Fanout(get_redis(), ledger).finish(job_id, result, failed and {
        "type": "SomeImagesFailed", "message": f"{len(failed)} images failed to upload: "
                                               f"{', '.join(sorted(failed)[:10])}", "images": failed})
