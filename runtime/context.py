"""What a job's code sees of its job: its id and parameters, its record, and how to report progress.

Progress goes to the ledger, and to Flower as a `task-progress` event on the job's own task,
whichever task made the progress (an item of a batch too), so Flower shows it on the job's row.
update_state never reaches Flower; events do.
"""
from __future__ import annotations

from typing import Any

from celery import current_task

from config.redis_client import get_ledger
from geoqueue.job_record import TERMINAL, Job
from geoqueue.ledger_keys import job_key
from runtime.errors import JobStopped


def publish_progress(job_id: str, phase: str, done: int | None, total: int | None) -> None:
    """A `task-progress` event for the job's row in Flower. Flower displays only its known task
    fields, so the progress also travels as the `result` text it shows until the job's own result arrives."""
    task = current_task
    if not task or task.request.called_directly:
        return
    count = f" {done}/{total}" if done is not None and total else ""
    with task.app.events.default_dispatcher(hostname=task.request.hostname) as dispatcher:
        dispatcher.send("task-progress", uuid=job_id, job_id=job_id, phase=phase, done=done, total=total,
                        result=f"progress: {phase}{count}")


class JobContext:
    """One job, as the task working for it sees it."""

    def __init__(self, job: Job) -> None:
        self.id = job.id
        self.name = job.name
        # Normalized by the catalog at submit, and again by the job's entry task (runtime/entry.py).
        self.params: dict[str, Any] = job.params
        self.ledger = get_ledger()

    @classmethod
    def load(cls, job_id: str) -> JobContext:
        return cls(cls._read(job_id))

    @staticmethod
    def _read(job_id: str) -> Job:
        job = get_ledger().get(job_id)
        if job is None:
            raise JobStopped(f"job {job_id} has no record (expired?)")
        return job

    @property
    def record(self) -> Job:
        return self._read(self.id)

    def progress(self, phase: str, done: int | None = None, total: int | None = None) -> None:
        self.ledger.progress(self.id, phase, done, total)
        publish_progress(self.id, phase, done, total)

    def progress_of_items(self, phase: str) -> None:
        """Progress of a fanned-out job: its phase, and the ledger's own count of items with an outcome,
        never written back (a count read before another item was recorded would undo that item's)."""
        self.ledger.progress(self.id, phase)
        record = self.record
        publish_progress(self.id, phase, record.done, record.total)

    def show(self, state: str, phase: str, **fields: Any) -> None:
        """The job's state while it goes on (queued for a resource, running, waiting on the vendor)."""
        self.ledger.transition(self.id, state, phase=phase, **fields)

    def check_canceled(self) -> None:
        """Stop quietly when the job ended elsewhere (canceled by its producer, failed by another task)."""
        if self.ledger.redis.hget(job_key(self.id), "state") in (None, *TERMINAL):
            raise JobStopped(self.id)
