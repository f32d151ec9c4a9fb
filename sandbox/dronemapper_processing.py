"""DroneMapper stand-in: tasks and their processing, simulated on a clock read at each request."""
from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.dronemapper_api import _as_bool
from sandbox.dronemapper_options import ODM_STAGES

QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50
TERMINAL = (FAILED, COMPLETED, CANCELED)
CANCEL, REMOVE, RESTART = 1, 2, 3
NODE = {"id": 1, "hostname": "node-odm-1", "port": 3000}


# --- the state ---

@dataclass
class Run:
    """One processing run, read off the clock: null -> QUEUED -> RUNNING -> COMPLETED | FAILED."""
    started: float
    to_node_s: float
    queued_s: float
    running_s: float
    fail_after_s: float | None      # seconds into RUNNING at which it fails, or None
    script: list[str]               # the console output of a whole successful run


@dataclass
class Task:
    id: int
    project: int
    created_at: str
    name: str | None = None
    options: list = field(default_factory=list)
    images: dict[str, dict] = field(default_factory=dict)   # filename -> {size, sha256}
    images_count: int = 0
    partial: bool = False
    auto_processing_node: bool = True
    processing_node: int | None = None
    uuid: str = ""
    status: int | None = None
    last_error: str | None = None
    pending_action: int | None = None
    pending_at: float = 0.0
    running_progress: float = 0.0
    upload_progress: float = 0.0
    processing_time: int = -1
    available_assets: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    run: Run | None = None
    runs: int = 0

    def to_json(self) -> dict:
        return {
            "id": self.id, "project": self.project, "processing_node": self.processing_node,
            "processing_node_name": f"{NODE['hostname']}:{NODE['port']}" if self.processing_node else None,
            "images_count": self.images_count,
            "can_rerun_from": ["", *ODM_STAGES] if self.processing_node else [],
            "available_assets": list(self.available_assets), "uuid": self.uuid, "name": self.name,
            "processing_time": self.processing_time, "auto_processing_node": self.auto_processing_node,
            "status": self.status, "last_error": self.last_error, "options": self.options,
            "ground_control_points": None, "created_at": self.created_at, "pending_action": self.pending_action,
            "public": False, "resize_to": -1, "upload_progress": self.upload_progress, "resize_progress": 0.0,
            "running_progress": round(self.running_progress, 4), "partial": self.partial,
        }


class Processing:
    """The task clock: null -> QUEUED -> RUNNING -> COMPLETED | FAILED, and pending actions."""

    def _start_run(self, task: Task, now: float) -> None:
        o = self.options
        task.runs += 1
        named = task.name is not None and task.name in o["fail_tasks_named"] and task.runs <= int(o["fail_runs"])
        by_chance = random.Random(f"{o['seed']}:{task.id}:{task.runs}").random() < float(o["fail_rate"])
        running_s = float(o["running_s"])
        fail_after_s = float(o["fail_at"]) * running_s if named or by_chance else None
        task.run = Run(started=now, to_node_s=float(o["upload_to_node_s"]), queued_s=float(o["queued_s"]),
                       running_s=running_s, fail_after_s=fail_after_s,
                       script=_console_script(task, int(o["console_lines"])))
        task.status, task.last_error, task.running_progress, task.upload_progress = None, None, 0.0, 0.0
        task.processing_time, task.available_assets, task.console = -1, [], []

    def _advance(self, task: Task, now: float) -> bool:
        """Bring the task to `now`; False when it has been removed."""
        if task.pending_action is not None and now >= task.pending_at:
            self._run_until(task, task.pending_at)
            if not self._apply_pending(task):
                return False
        self._run_until(task, now)
        return True

    def _run_until(self, task: Task, t: float) -> None:
        run = task.run
        if run is None or (task.processing_node is None and not task.auto_processing_node):
            return  # nothing running, or no node to run on: WebODM waits for the user to pick one
        elapsed = t - run.started
        if elapsed < run.to_node_s:
            task.status = None
            return
        task.processing_node = task.processing_node or NODE["id"]
        task.uuid = task.uuid or str(uuid.UUID(int=random.Random(f"uuid:{task.id}").getrandbits(128), version=4))
        task.upload_progress = 1.0
        running = elapsed - run.to_node_s - run.queued_s
        if running < 0:
            task.status = QUEUED
        elif run.fail_after_s is not None and running >= run.fail_after_s:
            _show_progress(task, run, run.fail_after_s)
            task.console += [f"[ERROR]   {self.options['fail_error']}", "Child returned 1",
                             "===== Dumping Info for Geeks (developers need this to fix bugs) ====="]
            task.status, task.last_error, task.run = FAILED, self.options["fail_error"], None
        elif running >= run.running_s:
            _show_progress(task, run, run.running_s)
            task.status, task.running_progress, task.run = COMPLETED, 1.0, None
            task.available_assets = self._assets_for(task)
        else:
            _show_progress(task, run, running)
            task.status = RUNNING

    def _apply_pending(self, task: Task) -> bool:
        action, task.pending_action = task.pending_action, None
        if action == REMOVE:
            del self.tasks[task.id]
            return False
        if action == CANCEL and task.status not in (COMPLETED, FAILED):
            task.run, task.status = None, CANCELED
        elif action == RESTART and task.run is None:  # NodeODM restarts only a task that has stopped
            if task.images_count < 2:
                task.status, task.last_error = FAILED, "Not enough images"
            else:
                self._start_run(task, task.pending_at)
        return True

    def _assets_for(self, task: Task) -> list[str]:
        chosen = {o["name"]: o["value"] for o in task.options}
        assets = list(self.options["assets"])
        if _as_bool(chosen.get("fast-orthophoto", False)):
            assets = [a for a in assets if a != "pointcloud.ply"]
        if _as_bool(chosen.get("dtm", False)):
            assets.append("dtm.tif")
        return assets


def _show_progress(task: Task, run: Run, running: float) -> None:
    """Progress, processing time and console output `running` seconds into RUNNING."""
    share = min(1.0, running / run.running_s)
    node_share = min(1.0, share / 0.9)  # node progress x 0.85; the last tenth is WebODM pulling results
    task.running_progress = 0.85 * node_share + 0.10 * max(0.0, (share - 0.9) / 0.1)
    task.processing_time = int(min(running, 0.9 * run.running_s) * 1000)
    task.console = run.script[: int(len(run.script) * node_share)]


def _console_script(task: Task, total: int) -> list[str]:
    """Console output of a whole run, ODM-like: the images, then each stage of the pipeline."""
    lines = [f"[INFO]    Initializing ODM 3.5.4 - {datetime.now(UTC):%a %b %d %H:%M:%S %Y}",
             "[INFO]    ==============", f"[INFO]    Processing node: {NODE['hostname']}:{NODE['port']}",
             f"[INFO]    Options: {json.dumps(task.options)}"]
    for name in list(task.images)[: max(1, total // 4)]:
        lines.append(f"[DEBUG]   Loaded {name} | camera: dji fc6310 4864 3648 brown 0.6666 rgb"
                     " | dimensions: 4864 x 3648")
    stage = 0
    while len(lines) < total:
        name = ODM_STAGES[stage % len(ODM_STAGES)]
        lines += [f"[INFO]    Running {name} stage", f"[INFO]    Finished {name} stage"]
        stage += 1
    return lines[: total - 1] + ["[INFO]    ODM app finished - " + f"{datetime.now(UTC):%a %b %d %H:%M:%S %Y}"]
