"""The chaos run: a mixed batch of every vendor's long jobs on three workers, once without faults
(the baseline) and once with all of them at the same time, each on a fresh embedded stack:

- SIGKILLs of busy workers (their whole process group, as the OOM killer would), among them one
  while an Immersal capture is under way, one while a DroneMapper task creation is, and one while
  a Mapillary image upload is; the stack's supervision starts each killed worker again;
- one Redis restart (SIGKILL, 5 s down);
- 20% HTTP 500 and 5% 429 (Retry-After 2 s) from every vendor, on every call;
- tokens that stop working mid-run, for every vendor whose tokens do: Immersity's expire, Immersal's
  are revoked, DroneMapper's expire (the vendor's clock jumps ahead); Mapillary's do not expire.

It prints, for both runs, the jobs right (succeeded, with the expected outputs in S3 and at the
vendor), failed (with their errors), unfinished and lost (no record, or a record that never moved),
the duplicate vendor side effects the sandbox's counters show, and the time to finish; it exits
non-zero when a run misses the goal: every job right, no duplicate, none lost.

    python bench/chaos.py            # the batch of the issue: 10 jobs, 10 kills
    python bench/chaos.py --small    # one job of each kind, 3 kills (tests/fleet/test_chaos.py, in CI)

Both runs slow a few calls on purpose (the vendor's speed, not a fault), so that a kill can land
while one of them is under way.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import lzma
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.options import add_setting_option, settings_from  # noqa: E402
from devstack.local_stack import LocalStack  # noqa: E402
from devstack.samples import drive_photos, immersal_site, scene, survey_photos  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.job_record import Job  # noqa: E402
from geoqueue.s3ref import S3Ref, parse_ref  # noqa: E402
from sandbox.mapillary_world import build_world  # noqa: E402

BUCKET = "geoqueue"
WORKERS = ("w1", "w2", "w3")
# The tests' settings (a 30 s visibility timeout, every limit below it), three calls at once per worker.
SETTINGS = {"GEOQUEUE_VISIBILITY_TIMEOUT": "30", "GEOQUEUE_UNACKED_RESTORE_INTERVAL": "2",
            "GEOQUEUE_TASK_TIME_LIMIT": "28", "GEOQUEUE_IMMERSITY_TIMEOUT": "15", "GEOQUEUE_RETRY_BACKOFF_MAX": "8",
            "GEOQUEUE_CALL_RETRY_SECONDS": "12", "GEOQUEUE_TRANSFER_CONCURRENCY": "3"}
VENDOR_SPEED = {
    "immersity": {"processing_delay_s": 0.5},
    "immersal": {"construct_seconds": 2.0},
    "dronemapper": {"upload_to_node_s": 0.1, "queued_s": 0.3, "running_s": 2.0, "action_delay_s": 0.1,
                    "console_lines": 30, "orthophoto_px": 256, "dsm_px": 64, "pointcloud_points": 2000},
}
# Calls slowed in both runs (before they are served and after), so that a kill lands while one is under way.
SLOW_CALLS = {
    "immersal": {"latency_paths": "/capture$", "latency_ms": 300, "answer_delay_ms": 300},
    "dronemapper": {"latency_paths": r"/api/projects/\d+/tasks/$", "latency_ms": 1500, "answer_delay_ms": 1500},
    "mapillary": {"latency_paths": r"/rupload/.*\.jpg$", "latency_ms": 250, "answer_delay_ms": 250},
}
ERRORS = {"error_rate": 0.2, "rate_limit_rate": 0.05, "retry_after_s": 2.0}
NO_ERRORS = {"error_rate": 0.0, "rate_limit_rate": 0.0}
VENDORS = ("immersity", "immersal", "dronemapper", "mapillary")
CREDITS_PER_CALL = 10              # the Immersity stand-in's price of a disparity map and of an animation
REDIS_OUTAGE_S = 5.0
CLOCK_JUMP_S = 7 * 3600            # past the 6 h lifetime of a DroneMapper token
ANIMATION = {"animationType": "gif", "animationLength": 2}
DRIVE_START = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Batch:
    name: str
    immersity: tuple[int, int]        # jobs, images each (the first job animates its images too)
    immersal: tuple[int, int, int]    # jobs, images each, images per chunk (chunks go 3 at a time)
    dronemapper: tuple[int, int]      # jobs, images each
    harvest: tuple[str, tuple]        # organization (slug) and bbox in the stand-in's world
    upload: int                       # images of one mapillary.upload_sequence
    kills: int
    token_expiries: int               # times each vendor's tokens stop working
    deadline_s: float                 # what is not finished by then is unfinished (or lost)


# Bboxes chosen in the stand-in's world (seed 42): two sequences of sandbox-city (48 + 68 images),
# one of sandbox-fleet (25); nothing else of the organization within 5 m of them.
FULL = Batch("full", (3, 10), (2, 24, 4), (3, 10), ("sandbox-city", (33.352346, 35.176439, 33.352676, 35.176709)),
             upload=20, kills=10, token_expiries=3, deadline_s=900)
# The small batch submits its map in one chunk. Chunks capturing at once can leave several captures cut
# off by one kill, and when some of those the vendor refused (the 5xx their worker never read), only
# Immersal's workspace count can tell which arrived: settle may then send an arrived image again (a
# duplicate the full run shows at times; README, "Chaos run"). CI checks the rest without that chance.
SMALL = Batch("small", (1, 4), (1, 8, 8), (1, 4), ("sandbox-fleet", (33.364141, 35.164116, 33.36447, 35.164385)),
              upload=6, kills=3, token_expiries=1, deadline_s=300)


@dataclass
class Submitted:
    label: str
    job_id: str
    check: Callable[["Run", Job], list[str]]     # what is wrong with the succeeded job (nothing: right)


@dataclass
class Outcome:
    label: str
    verdict: str                    # right, failed, unfinished, lost
    detail: str = ""


@dataclass
class Report:
    title: str
    outcomes: list[Outcome]
    duplicates: dict[str, dict[str, int]]
    seconds: float
    chaos: list[str] = field(default_factory=list)     # what was done to the fleet
    left_held: dict[str, int] = field(default_factory=dict)

    def count(self, verdict: str) -> int:
        return sum(1 for o in self.outcomes if o.verdict == verdict)

    @property
    def duplicate_total(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.duplicates.values())

    @property
    def goal_met(self) -> bool:
        """Every job right (none failed, unfinished or lost), no duplicate, and nothing left held."""
        return self.count("right") == len(self.outcomes) and self.duplicate_total == 0 and not self.left_held


# --- the batch ---
class Run:
    """One stack, one batch, what it is checked against."""

    def __init__(self, batch: Batch, seed: int, settings: dict[str, str]) -> None:
        self.batch, self.seed = batch, seed
        self.stack = LocalStack(settings_env={**SETTINGS, **settings}, isolated=True, flower=False, worker_queues=())
        self.planned: list[tuple] = []
        self.submitted: list[Submitted] = []
        self.expected_sequences = 0

    def start(self) -> None:
        self.stack.start()
        for name in WORKERS:
            self.stack.start_worker("transfer", name=name, queues="control,transfer")
        self.stack.wait_for_workers(list(WORKERS))
        self.queue, self.store = GeoQueue(self.stack.redis_url), self.stack.object_store()
        for vendor, options in VENDOR_SPEED.items():
            self.stack.sandbox("POST", f"/_sandbox/config/{vendor}", json=options)

    def faults(self, errors: bool) -> None:
        for vendor in VENDORS:
            values = {**SLOW_CALLS.get(vendor, {}), **(ERRORS if errors else NO_ERRORS), "seed": self.seed}
            self.stack.sandbox("POST", f"/_sandbox/faults/{vendor}", json=values)

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.store.write(S3Ref(BUCKET, key), data, content_type)

    def plan(self, label: str, name: str, params: dict, check: Callable[["Run", Job], list[str]]) -> None:
        self.planned.append((label, name, params, check))

    def submit_all(self) -> None:
        """All at once, the inputs in S3 already: the faults meet every job from its start."""
        for label, name, params, check in self.planned:
            self.submitted.append(Submitted(label, self.queue.submit(name, params), check))

    def prepare_batch(self) -> None:
        """Every job's inputs in S3, and what its outputs are checked against."""
        b = self.batch
        for n in range(b.dronemapper[0]):
            prefix = f"chaos/survey-{n}/"
            photos = survey_photos(b.dronemapper[1])
            for name, data in photos:
                self.put(prefix + name, data)
            digests = {name: hashlib.sha256(data).hexdigest() for name, data in photos}
            self.plan(f"dronemapper.process_survey {n}", "dronemapper.process_survey", {
                "images": f"s3://{BUCKET}/{prefix}", "project_name": f"chaos {n}", "max_parallel_uploads": 3},
                lambda run, job, digests=digests: run.check_survey(job, digests))
        for n in range(b.immersal[0]):
            prefix = f"chaos/site-{n}/"
            # A tracker session (run) per site: the stand-in counts captures by (bank, run, index).
            photos, manifest, _ = immersal_site(b.immersal[1], (60.1699, 24.9384, 25.0), 64, 48, run=n, seed=100 * n)
            for name, data in photos:
                self.put(prefix + name, data)
            self.put(prefix + "manifest.csv", manifest.encode(), "text/csv")
            expected = {(n, index, hashlib.sha256(data).hexdigest()) for index, (_, data) in enumerate(photos)}
            self.plan(f"immersal.build_map {n}", "immersal.build_map", {
                "images": f"s3://{BUCKET}/{prefix}", "name": f"ChaosSite{n}", "chunk_size": b.immersal[2],
                "max_parallel": 3},
                lambda run, job, expected=expected: run.check_map(job, expected))
        for n in range(b.immersity[0]):
            prefix = f"chaos/photos-{n}/"
            for i in range(b.immersity[1]):
                self.put(f"{prefix}img-{i:03d}.jpg", scene(1000 * n + i, 160, 120))
            params = {"prefix": f"s3://{BUCKET}/{prefix}", "max_parallel": 4}
            if n == 0:
                params["animation"] = ANIMATION
            self.plan(f"immersity.batch {n}", "immersity.batch", params,
                        lambda run, job, animated=n == 0: run.check_disparities(job, animated))
        slug, bbox = b.harvest
        world = build_world()
        organization = world.organization_by_slug(slug)
        sequences = {image.sequence_id for image in world.images_in_bbox(bbox, organization.id)}
        image_ids = {i for s in sequences for i in world.sequences[s].image_ids}
        destination = f"s3://{BUCKET}/chaos/harvest/"
        self.plan(f"mapillary.harvest ({len(image_ids)} images, {len(sequences)} sequences)", "mapillary.harvest",
                    {"organization_id": organization.id, "bbox": list(bbox), "destination": destination},
                    lambda run, job: run.check_harvest(job, destination, image_ids))
        photos = drive_photos(b.upload, DRIVE_START)
        for name, data in photos:
            self.put("chaos/drive/" + name, data)
        md5s = {hashlib.md5(data).hexdigest() for _, data in photos}
        self.plan("mapillary.upload_sequence", "mapillary.upload_sequence",
                    {"images": f"s3://{BUCKET}/chaos/drive/", "max_parallel": 3},
                    lambda run, job: run.check_upload(job, md5s))

    # --- is a succeeded job right? ---
    def missing_objects(self, uris: list[str]) -> list[str]:
        return [f"{uri} is not in S3" for uri in uris if not self.store.size(parse_ref(uri))]

    def check_disparities(self, job: Job, animated: bool) -> list[str]:
        outcomes = list(self.queue.items(job.id).values())
        problems = [] if job.result["succeeded"] == self.batch.immersity[1] == len(outcomes) else \
            [f"{job.result['succeeded']} of {self.batch.immersity[1]} images succeeded"]
        credits = len(outcomes) * CREDITS_PER_CALL * (2 if animated else 1)
        if job.credits != credits:
            problems.append(f"{job.credits} credits counted where {credits} were spent")
        uris = [o[kind] for o in outcomes for kind in ("disparity", "animation") if kind in o]
        if animated and sum("animation" in o for o in outcomes) != len(outcomes):
            problems.append("an image has no animation")
        return problems + self.missing_objects(uris)

    def check_map(self, job: Job, expected: set[tuple[int, int, str]]) -> list[str]:
        data = self.store.read(parse_ref(job.result["map"]))
        if hashlib.sha256(data).hexdigest() != job.result["sha256"]:
            return [f"{job.result['map']} does not match its sha256"]
        # The stand-in's map format: one line per image it was built from (run, index, sha256, pose).
        lines = lzma.decompress(data).decode().splitlines()[1:]
        built = {(int(run), int(index), digest) for run, index, digest, *_ in (line.split() for line in lines)}
        return [] if built == expected else [f"the map holds {len(built & expected)} of the {len(expected)} images "
                                             f"and {len(built - expected)} others"]

    def check_survey(self, job: Job, digests: dict[str, str]) -> list[str]:
        assets = job.result["assets"]
        stored = {name: self.store.size(parse_ref(a["uri"])) for name, a in assets.items()}
        problems = [f"{name}: {stored[name]} bytes in S3 where {a['bytes']} were delivered"
                    for name, a in assets.items() if stored[name] != a["bytes"] or not a["bytes"]]
        if len(assets) != 3:
            problems.append(f"assets delivered: {sorted(assets)}")
        task = self.stack.sandbox("GET", "/_sandbox/status/dronemapper")["tasks"][str(job.result["task"])]
        held = {name: image["sha256"] for name, image in task["images"].items()}
        return problems + ([] if held == digests else [f"the vendor task holds {len(held)} images, "
                                                       f"{sum(held.get(n) == d for n, d in digests.items())} as sent"])

    def check_harvest(self, job: Job, destination: str, image_ids: set[str]) -> list[str]:
        r = job.result
        problems = [] if r["images_downloaded"] + r["images_already_present"] == len(image_ids) and \
            r["images_missing"] == 0 else [f"downloaded {r['images_downloaded']} of {len(image_ids)} images"]
        folder = parse_ref(destination, prefix=True).child("downloaded_images/")
        stored = {ref.name for ref, size in self.store.list(folder) if size}
        if stored != {f"{i}_256.jpg" for i in image_ids}:
            problems.append(f"{len(stored)} images at the destination where {len(image_ids)} were expected")
        rows = list(csv.DictReader(io.StringIO(self.store.read(parse_ref(r["outputs"]["img_dataset.csv"])).decode())))
        if sorted(row["img_id"] for row in rows) != sorted(image_ids):
            problems.append(f"img_dataset.csv lists {len(rows)} images where {len(image_ids)} were expected")
        return problems + self.missing_objects([r["outputs"]["seq_dataset.csv"], r["outputs"]["img_meta_dataset.csv"]])

    def check_upload(self, job: Job, md5s: set[str]) -> list[str]:
        r = job.result
        status = self.stack.sandbox("GET", "/_sandbox/status/mapillary")
        sessions = {s["md5"] for key, s in status["upload_sessions"].items() if key.endswith(".jpg") and s["handle"]}
        clusters = {c["cluster_id"]: c for c in status["clusters"].values()}
        problems = [] if r["uploaded"] == len(md5s) else [f"{r['uploaded']} of {len(md5s)} images uploaded"]
        if not md5s <= sessions:
            problems.append(f"{len(md5s - sessions)} images have no completed upload session")
        closed = [s for s in r["sequences"] if s["state"] == "uploaded" and s.get("cluster_id") in clusters]
        if len(closed) != len(r["sequences"]) or sum(clusters[s["cluster_id"]]["images"] for s in closed) != len(md5s):
            shown = [(s["state"], s.get("cluster_id")) for s in r["sequences"]]
            problems.append(f"sequences closed at the vendor: {shown}")
        self.expected_sequences = len(r["sequences"])
        return problems

    # --- the verdicts ---
    def wait(self, chaos: "Chaos | None") -> float:
        started = time.monotonic()
        deadline = started + self.batch.deadline_s
        while time.monotonic() < deadline:
            try:
                if all((job := self.queue.ledger.get(s.job_id)) is not None and job.finished for s in self.submitted):
                    break
            except redis.RedisError:      # Redis restarting: ask again
                pass
            if chaos is not None and chaos.error:
                raise chaos.error
            time.sleep(0.5)
        return time.monotonic() - started

    def verdicts(self) -> list[Outcome]:
        outcomes = []
        for s in self.submitted:
            job = self.queue.ledger.get(s.job_id)
            if job is None:
                outcomes.append(Outcome(s.label, "lost", "no record"))
            elif not job.finished:
                moved = job.updated > job.created
                outcomes.append(Outcome(s.label, "unfinished" if moved else "lost",
                                        f"{job.state}: {job.phase} {job.done}/{job.total}"))
            elif job.state != "succeeded":
                outcomes.append(Outcome(s.label, "failed", f"{job.state}: {job.error}"))
            else:
                try:
                    problems = s.check(self, job)
                except Exception as exc:  # a result missing what it should hold is wrong, not a crash of the run
                    problems = [f"{type(exc).__name__}: {exc}"]
                outcomes.append(Outcome(s.label, "failed" if problems else "right",
                                        "succeeded, but " + "; ".join(problems) if problems else ""))
        return outcomes

    def left_held(self) -> dict[str, int]:
        """What the fleet still holds for the batch once every job ended: nothing, when each let go."""
        r = redis.Redis.from_url(self.stack.redis_url, decode_responses=True)
        try:
            return {name: n for name, n in {
                "jobs holding something (gq:holders)": r.scard("gq:holders"),
                "fan-outs open (gq:fanouts)": r.scard("gq:fanouts"),
                "Immersal jobs followed by the poller": r.scard("gq:immersal:active"),
                "DroneMapper surveys followed by the poller": r.scard("gq:dronemapper:active"),
                "Immersity credit reservations": r.hlen("gq:budget:immersity:reserved"),
                "Immersal workspace leases": len(list(r.scan_iter("gq:immersal:workspace:*"))),
            }.items() if n}
        finally:
            r.close()

    def duplicates(self) -> dict[str, dict[str, int]]:
        """Vendor side effects made more than once, from the sandbox's counters and state."""
        counters = self.stack.sandbox("GET", "/_sandbox/counters")
        status = {vendor: self.stack.sandbox("GET", f"/_sandbox/status/{vendor}")
                  for vendor in ("immersal", "mapillary")}

        def repeats(vendor: str, kind: str) -> int:
            return sum(n - 1 for key, n in counters[vendor].items() if key.startswith(kind + ":") and n > 1)

        maps_per_name = Counter(m["name"] for m in status["immersal"]["maps"].values())
        sessions_per_image = Counter(s["md5"] for key, s in status["mapillary"]["upload_sessions"].items()
                                     if key.endswith(".jpg") and s["handle"])
        clusters = len(status["mapillary"]["clusters"])
        return {
            "immersity": {"disparity calls per output": repeats("immersity", "disparity"),
                          "animation calls per output": repeats("immersity", "animation")},
            "immersal": {"captures per (job, run, index)": repeats("immersal", "capture"),
                         "constructs per job": sum(n - 1 for n in maps_per_name.values())},
            "dronemapper": {"task creations per job": repeats("dronemapper", "task_create"),
                            "project creations per job": repeats("dronemapper", "project_create")},
            "mapillary": {"upload sessions per image": sum(n - 1 for n in sessions_per_image.values()),
                          "clusters per sequence": max(0, clusters - self.expected_sequences),
                          "finish calls per sequence": repeats("mapillary", "finish")},
        }

    def stop(self) -> None:
        self.stack.stop()


# --- the faults ---
class Chaos(threading.Thread):
    """Kills busy workers (some at chosen moments), restarts Redis once and makes tokens stop working,
    spread over `horizon_s` seconds, while the batch runs."""

    def __init__(self, run: Run, horizon_s: float, seed: int) -> None:
        super().__init__(name="chaos", daemon=True)
        self.run_, self.stack, self.batch = run, run.stack, run.batch
        self.horizon_s = horizon_s
        self.rng = random.Random(seed)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.log: list[str] = []
        self.kills: list[str] = []
        self.aimed = {"immersal capture": False, "dronemapper task creation": False, "mapillary upload": False}
        self.redis_restarted = False
        self.expiries = 0
        self.control = Celery(broker=self.stack.redis_url)
        self.redis = redis.Redis.from_url(self.stack.redis_url, decode_responses=True)
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f}s {text}"
        self.log.append(line)
        print("   ", line, flush=True)

    def run(self) -> None:
        try:
            self.make_chaos()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self.done.set()
        self.join(60)
        self.control.close()

    def finished(self) -> bool:
        return len(self.kills) >= self.batch.kills and self.redis_restarted and \
            self.expiries >= self.batch.token_expiries

    def make_chaos(self) -> None:
        gap = max(3.0, 0.5 * self.horizon_s / self.batch.kills)        # between two kills not aimed at a call
        expiry_every = self.horizon_s / (self.batch.token_expiries + 1)
        last_kill = 0.0
        while not self.done.wait(0.2) and not self.finished():
            try:
                last_kill = self.chaos_round(gap, expiry_every, last_kill)
            except redis.RedisError:      # Redis restarting under a look at the job records: look again
                continue

    def chaos_round(self, gap: float, expiry_every: float, last_kill: float) -> float:
        """Whatever is due now: a token expiry, the Redis restart, a kill; returns when the last kill was."""
        elapsed = time.monotonic() - self.started
        if self.expiries < self.batch.token_expiries and elapsed >= expiry_every * (self.expiries + 1):
            self.expire_tokens()
        if not self.redis_restarted and elapsed >= 0.4 * self.horizon_s:
            self.restart_redis()
        if len(self.kills) >= self.batch.kills:
            return last_kill
        active = self.active()
        target = self.aimed_target(active)
        unaimed_left = self.batch.kills - len(self.kills) - sum(not hit for hit in self.aimed.values())
        if target is None and unaimed_left > 0 and elapsed - last_kill >= gap:
            busy = sorted(w for w, tasks in active.items() if tasks)
            if busy:
                target = (self.rng.choice(busy), "a busy worker")
        if target is not None:
            self.kill(*target, active)
            last_kill = time.monotonic() - self.started
        return last_kill

    def active(self) -> dict[str, list[dict]]:
        """What each worker runs now (`celery inspect active`); {} while Redis is away."""
        try:
            replies = self.control.control.inspect(timeout=0.5).active() or {}
        except Exception:  # noqa: BLE001 - Redis away, a worker restarting: ask again next round
            return {}
        return {host.split("@")[0]: tasks for host, tasks in replies.items() if host.split("@")[0] in WORKERS}

    def in_flight(self, job_id: str, scope: str, effect: str | None = None) -> bool:
        """An exactly-once effect of the job marked and not yet recorded: its call is under way."""
        key = f"gq:job:{job_id}:once" + (f":{scope}" if scope else "")
        entries = self.redis.hgetall(key)
        return any('"result"' not in raw for name, raw in entries.items() if effect is None or name == effect)

    def aimed_target(self, active: dict[str, list[dict]]) -> tuple[str, str] | None:
        """A worker running a call that a kill is still to be aimed at, the shortest windows first."""
        calls = {  # what is aimed at: the task running it, and whether its call is under way now
            "dronemapper task creation": ("dronemapper.process_survey",
                                          lambda task: self.in_flight(task["id"], "", "dronemapper:task")),
            "immersal capture": ("immersal.transfer.submit_chunk",
                                 lambda task: self.in_flight(task["kwargs"]["job_id"], "captures")),
            "mapillary upload": ("mapillary.transfer.upload_image", lambda task: True),
        }
        for call, (task_name, under_way) in calls.items():
            if self.aimed[call]:
                continue
            for worker, tasks in active.items():
                if any(task["name"] == task_name and under_way(task) for task in tasks):
                    return worker, call
        return None

    def kill(self, worker: str, why: str, active: dict[str, list[dict]]) -> None:
        running = ", ".join(sorted(t["name"] for t in active.get(worker, []))) or "?"
        # SIGKILL to the whole process group, unasked: the stack's supervisor starts it again.
        self.stack.processes[worker].kill_group()
        if why in self.aimed:
            self.aimed[why] = True
        self.kills.append(f"{worker} ({why})")
        self.note(f"SIGKILL {worker} during {why}; it ran: {running}")

    def restart_redis(self) -> None:
        self.note(f"Redis: SIGKILL, {REDIS_OUTAGE_S:g} s down")
        self.stack.restart_redis(signal.SIGKILL, outage=REDIS_OUTAGE_S)
        self.redis_restarted = True
        self.note("Redis: back")

    def expire_tokens(self) -> None:
        self.expiries += 1
        self.stack.sandbox("POST", "/_sandbox/config/immersity", json={"expire_issued_tokens": True})
        self.stack.sandbox("POST", "/_sandbox/config/immersal", json={"revoke_tokens": True})
        self.stack.sandbox("POST", "/_sandbox/config/dronemapper",
                           json={"clock_offset_s": CLOCK_JUMP_S * self.expiries})
        self.note("tokens: Immersity's expired, Immersal's revoked, DroneMapper's expired (its clock jumped 7 h)")

    def summary(self) -> list[str]:
        restarts = sum((self.stack.supervisor.restarts if self.stack.supervisor else {}).values())
        aimed = ", ".join(f"{what}: {'yes' if hit else 'MISSED'}" for what, hit in self.aimed.items())
        return [f"{len(self.kills)} SIGKILLs of busy workers ({aimed}); the stack restarted killed workers "
                f"{restarts} times",
                f"Redis restarted {'once' if self.redis_restarted else 'NOT'} (SIGKILL, {REDIS_OUTAGE_S:g} s down)",
                f"{ERRORS['error_rate']:.0%} HTTP 500 and {ERRORS['rate_limit_rate']:.0%} 429 (Retry-After "
                f"{ERRORS['retry_after_s']:g} s) from every vendor",
                f"tokens stopped working {self.expiries} times (Immersity's expired, Immersal's revoked, "
                f"DroneMapper's expired)"]


# --- one run, both runs ---
def run_once(batch: Batch, seed: int, settings: dict[str, str], with_faults: bool, horizon_s: float = 0) -> Report:
    title = "chaos" if with_faults else "baseline"
    print(f"\n{title}: starting a fresh stack ...", flush=True)
    run = Run(batch, seed, settings)
    try:
        run.start()
        run.prepare_batch()
        run.faults(errors=with_faults)
        chaos = Chaos(run, horizon_s, seed) if with_faults else None
        run.submit_all()
        if chaos is not None:
            chaos.start()
        print(f"{title}: {len(run.submitted)} jobs submitted; logs in {run.stack.run_dir}", flush=True)
        try:
            seconds = run.wait(chaos)
        finally:
            if chaos is not None:
                chaos.stop()
        run.faults(errors=False)
        report = Report(title, run.verdicts(), {}, seconds, chaos.summary() if chaos else [])
        report.duplicates = run.duplicates()
        report.left_held = run.left_held()
        return report
    finally:
        run.stop()


def print_reports(batch: Batch, reports: list[Report]) -> None:
    width = 48
    print(f"\nchaos run ({batch.name} batch): " + "; ".join(o.label for o in reports[0].outcomes))
    for report in reports:
        for line in report.chaos:
            print(f"  {report.title}: {line}")
    print("\n" + "".ljust(width) + "".join(r.title.rjust(12) for r in reports))
    total = len(reports[0].outcomes)
    rows = [("jobs right", [f"{r.count('right')}/{total}" for r in reports])]
    rows += [(verdict, [str(r.count(verdict)) for r in reports]) for verdict in ("failed", "unfinished", "lost")]
    rows.append(("duplicate vendor side effects", [str(r.duplicate_total) for r in reports]))
    for vendor in VENDORS:
        for kind in reports[0].duplicates[vendor]:
            rows.append((f"  {vendor}: {kind}"[:width], [str(r.duplicates[vendor][kind]) for r in reports]))
    rows.append(("held after the end", [str(sum(r.left_held.values())) for r in reports]))
    rows.append(("time to finish (s)", [f"{r.seconds:.0f}" for r in reports]))
    if len(reports) == 2:
        rows.append(("ratio chaos/baseline", ["", f"{reports[1].seconds / reports[0].seconds:.2f}"]))
    for name, values in rows:
        print(name.ljust(width) + "".join(v.rjust(12) for v in values))
    for report in reports:
        for what, n in report.left_held.items():
            print(f"  {report.title}: held after the end: {n} {what}")
        for outcome in report.outcomes:
            if outcome.verdict != "right":
                print(f"  {report.title}: {outcome.label}: {outcome.verdict}: {outcome.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="one job of each kind, 3 kills (CI)")
    parser.add_argument("--seed", type=int, default=7, help="of the faults drawn and the workers picked")
    parser.add_argument("--no-baseline", action="store_true", help="the chaos run alone (no time ratio)")
    add_setting_option(parser)
    args = parser.parse_args(argv)
    settings = settings_from(args)
    batch = SMALL if args.small else FULL
    reports = []
    if not args.no_baseline:
        reports.append(run_once(batch, args.seed, settings, with_faults=False))
    # The faults spread over the baseline's time plus one visibility timeout (what a killed worker's
    # messages wait before they come back).
    baseline = reports[0].seconds if reports else batch.deadline_s / 10
    horizon = baseline + float(SETTINGS["GEOQUEUE_VISIBILITY_TIMEOUT"])
    reports.append(run_once(batch, args.seed, settings, with_faults=True, horizon_s=horizon))
    print_reports(batch, reports)
    met = all(report.goal_met for report in reports)
    print("\ngoal " + ("met: every job right, no duplicate, none lost, nothing left held" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
