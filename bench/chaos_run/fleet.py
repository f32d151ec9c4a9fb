"""One chaos run's fleet: a fresh embedded stack with three workers taking both queues, the vendors'
speed and faults set, the batch submitted all at once and waited for."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from celery import Celery

from bench.chaos_run.batch import BUCKET, VENDORS, Batch, BatchPlan
from bench.chaos_run.checks import ResultChecks
from bench.chaos_run.event_streams import EventStreams
from bench.chaos_run.redis_ha import ManagedSetup, SentinelSetup
from bench.chaos_run.verdict import Submitted, Verdicts
from devstack.local_stack import LocalStack
from geoqueue import GeoQueue
from geoqueue.job_record import Job
from geoqueue.redis_url import connect, is_sentinel
from geoqueue.s3ref import S3Ref

if TYPE_CHECKING:
    from bench.chaos_run.faults import Chaos

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
# The Redis under the fleet: the stack's own (None), or one set up for a failover (redis_ha.py).
REDIS_SETUPS = {"sentinel": SentinelSetup, "managed": ManagedSetup}


class Run(BatchPlan, ResultChecks, Verdicts):
    """One stack, one batch, what it is checked against."""

    def __init__(self, batch: Batch, seed: int, settings: dict[str, str], redis_setup: str | None = None) -> None:
        self.batch, self.seed = batch, seed
        self.stack = LocalStack(settings_env={**SETTINGS, **settings}, isolated=True, flower=False, worker_queues=())
        self.redis_setup = REDIS_SETUPS[redis_setup](self.stack.run_dir / "redis-ha") if redis_setup else None
        self.planned: list[tuple] = []
        self.submitted: list[Submitted] = []
        self.expected_sequences = 0

    def start(self) -> None:
        if self.redis_setup is not None:
            self.redis_setup.start()
            self.stack.settings_env.update(self.redis_setup.settings())
        self.stack.start()
        self.master = self.stack.env.get("GEOQUEUE_REDIS_SENTINEL_MASTER")
        for name in WORKERS:
            self.stack.start_worker("transfer", name=name, queues="control,transfer")
        self.stack.wait_for_workers(list(WORKERS))
        self.queue, self.store = GeoQueue(self.stack.redis_url, self.master), self.stack.object_store()
        self.streams = EventStreams(self.stack.api_url, self.stack.api_key)
        for vendor, options in VENDOR_SPEED.items():
            self.stack.sandbox("POST", f"/_sandbox/config/{vendor}", json=options)

    def faults(self, errors: bool) -> None:
        for vendor in VENDORS:
            values = {**SLOW_CALLS.get(vendor, {}), **(ERRORS if errors else NO_ERRORS), "seed": self.seed}
            self.stack.sandbox("POST", f"/_sandbox/faults/{vendor}", json=values)

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.store.write(S3Ref(BUCKET, key), data, content_type)

    def plan(self, label: str, name: str, params: dict, check: Callable[[Run, Job], list[str]]) -> None:
        self.planned.append((label, name, params, check))

    def submit_all(self) -> None:
        """All at once, the inputs in S3 already: the faults meet every job from its start. Each job's
        event stream is followed over the API from then on."""
        for label, name, params, check in self.planned:
            self.submitted.append(Submitted(label, self.queue.submit(name, params), check))
            self.streams.follow(self.submitted[-1].job_id)

    def wait(self, chaos: Chaos | None) -> float:
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

    def redis_client(self) -> redis.Redis:
        return connect(self.stack.redis_url, self.master, decode_responses=True)

    def control_app(self) -> Celery:
        """A Celery app to ask the workers what they run."""
        app = Celery(broker=self.stack.redis_url)
        if is_sentinel(self.stack.redis_url):
            app.conf.broker_transport_options = {"master_name": self.master}
        return app

    def unasked_exits(self, killed: Counter[str]) -> dict[str, int]:
        """Fleet processes that exited without being killed by the run (the stack restarted them)."""
        exits = Counter(self.stack.supervisor.restarts if self.stack.supervisor else {})
        exits.update(name for name, process in self.stack.processes.items()
                     if not process.alive() and not process.stopping)     # exited, its restart still due
        return {name: n - killed[name] for name, n in exits.items() if n > killed[name]}

    def stop(self) -> None:
        try:
            self.stack.stop()
        finally:
            if self.redis_setup is not None:
                self.redis_setup.stop()
