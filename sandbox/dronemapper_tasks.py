"""DroneMapper stand-in: the task routes (create, read, update, images, actions, console output)."""
from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

from flask import Response, request

from sandbox.dronemapper_api import (
    _as_bool,
    _iso_now,
    _json,
    _ordered,
    _request_data,
    _request_files,
    invalid,
    not_found,
)
from sandbox.dronemapper_options import _validate_options
from sandbox.dronemapper_processing import CANCEL, NODE, REMOVE, RESTART, Task
from sandbox.faults import drop_connection

JPEG_MAGIC = b"\xff\xd8\xff"


class TaskRoutes:
    """/api/projects/{pid}/tasks/ and what hangs below a task, but its assets."""

    def _task(self, user: str | None, pid: int, tid: int) -> Task:
        """The task brought up to date, or 404 (also for an anonymous caller: WebODM hides, not forbids)."""
        self._project(user, pid)
        task = self.tasks.get(tid)
        if task is None or task.project != pid or not self._advance(task, time.monotonic()):
            raise not_found()
        return task

    def _list_tasks(self, user: str, pid: int) -> Response:
        with self.lock:
            self._project(user, pid)
            now = time.monotonic()
            tasks = [t for t in list(self.tasks.values()) if t.project == pid and self._advance(t, now)]
            rows = [t.to_json() for t in tasks]
            self.calls.add("task_list", str(pid))
        if request.args.get("status"):
            rows = [r for r in rows if str(r["status"]) == request.args["status"]]
        return _json(_ordered(rows, request.args.get("ordering") or "created_at"))

    def _get_task(self, user: str | None, pid: int, tid: int) -> Response:
        with self.lock:
            task = self._task(user, pid, tid)
            self.calls.add("task_status", str(tid))
            return _json(task.to_json())

    def _create_task(self, user: str, pid: int) -> Response:
        with self.lock:
            self._project(user, pid)
        self._maybe_drop_upload()
        data, files = _request_data(), _request_files()
        partial = bool(data.get("partial")) and self.options["partial_upload"]  # any non-empty form value is true
        if not partial and len(files) <= 1:
            raise invalid(["Cannot create task, you need at least 2 images"])
        fields = self._task_fields(data)
        images = {} if partial else self._receive(files)
        with self.lock:
            self._project(user, pid)  # it may have been deleted while the images came in
            task = Task(id=self.next_task_id, project=pid, created_at=_iso_now(), partial=partial, **fields)
            self.next_task_id += 1
            self.tasks[task.id] = task
            self._store_images(task, images)
            task.images_count = len(task.images)
            if not partial:
                self._start_run(task, time.monotonic())
            self.calls.add("task_create", task.name)
            return _json(task.to_json(), 201)

    def _update_task(self, user: str, pid: int, tid: int) -> Response:
        fields = self._task_fields(_request_data())
        with self.lock:
            task = self._task(user, pid, tid)
            waiting = task.run is not None and task.processing_node is None and not task.auto_processing_node
            for key, value in fields.items():
                setattr(task, key, value)
            if waiting and (task.processing_node or task.auto_processing_node):
                task.run.started = time.monotonic()  # it was waiting for a node; now it has one
            return _json(task.to_json())

    def _task_fields(self, data) -> dict[str, Any]:
        """The writable task fields present in `data`, validated like TaskSerializer (400 naming the field)."""
        fields, errors = {}, {}
        if "name" in data:
            fields["name"] = data["name"] or None
        if "options" in data:
            try:
                fields["options"] = _validate_options(data["options"], from_form=not request.is_json,
                                                      checks=self.options["option_checks"])
            except ValueError as exc:
                errors["options"] = [str(exc)]
        if "auto_processing_node" in data:
            value = _as_bool(data["auto_processing_node"])
            if value is None:
                errors["auto_processing_node"] = ["Must be a valid boolean."]
            fields["auto_processing_node"] = value
        if "processing_node" in data:
            node = data["processing_node"]
            if node in ("", None):
                fields["processing_node"] = None
            elif not str(node).isdigit():
                errors["processing_node"] = [f"Incorrect type. Expected pk value, received {type(node).__name__}."]
            elif int(node) != NODE["id"]:
                errors["processing_node"] = [f'Invalid pk "{node}" - object does not exist.']
            else:
                fields["processing_node"] = int(node)
        if errors:
            raise invalid(errors)
        return fields

    # --- images ---

    def _receive(self, files) -> dict[str, dict]:
        """Size and digest of each file (JPEG only); the bytes themselves are not kept."""
        images = {}
        for upload in files:
            head = upload.stream.read(3)
            if self.options["jpeg_only"] and head != JPEG_MAGIC:
                raise invalid({"images": [f"{upload.filename}: not a JPEG image (only JPEG images are accepted)"]})
            digest, size = hashlib.sha256(head), len(head)
            for chunk in iter(functools.partial(upload.stream.read, 1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
            images[upload.filename] = {"size": size, "sha256": digest.hexdigest()}
        return images

    def _store_images(self, task: Task, images: dict[str, dict]) -> None:
        for filename, info in images.items():
            task.images[filename] = info  # the same name again overwrites, as WebODM does
            self.calls.add("image_upload", f"{task.id}/{filename}")

    def _upload(self, user: str, pid: int, tid: int) -> Response:
        with self.lock:
            self._task(user, pid, tid)
        self._maybe_drop_upload()
        files = _request_files()
        if not files:
            raise invalid(["No files uploaded"])
        images = self._receive(files)
        with self.lock:
            task = self._task(user, pid, tid)
            self._store_images(task, images)
            return _json({"success": True, "uploaded": {name: info["size"] for name, info in images.items()}})

    def _commit(self, user: str, pid: int, tid: int) -> Response:
        with self.lock:
            task = self._task(user, pid, tid)
            if len(task.images) < 2:
                raise invalid(["You need to upload at least 2 images before commit"])
            task.images_count = len(task.images)
            if task.partial:  # committing twice is harmless: the task is already on its way
                task.partial = False
                self._start_run(task, time.monotonic())
            self.calls.add("commit", str(tid))
            return _json(task.to_json())

    def _maybe_drop_upload(self) -> None:
        """Read part of the body, then cut the connection: a proxy or node dying mid-upload."""
        with self.lock:
            drop = self.options["upload_drop_next"] > 0
            if drop:
                self.options["upload_drop_next"] -= 1
            elif self.options["upload_drop_rate"]:
                drop = self.rng.random() < float(self.options["upload_drop_rate"])
        if not drop:
            return
        self.calls.add("upload_dropped", request.path)
        remaining = int(self.options["upload_drop_after_bytes"])
        while remaining > 0:
            chunk = request.stream.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        drop_connection()

    # --- actions and output ---

    def _set_pending(self, user: str, pid: int, tid: int, action: int) -> Response:
        with self.lock:
            task = self._task(user, pid, tid)
            task.pending_action, task.pending_at = action, time.monotonic() + float(self.options["action_delay_s"])
            task.partial, task.last_error = False, None
            self.calls.add({CANCEL: "cancel", REMOVE: "remove", RESTART: "restart"}[action], str(tid))
            return _json({"success": True})

    def _output(self, user: str, pid: int, tid: int) -> Response:
        line = int(request.args.get("line", 0))  # not a number: a 500, as in WebODM
        with self.lock:
            task = self._task(user, pid, tid)
            text = "\n".join(task.console)
            self.calls.add("output", str(tid))
        return _json("\n".join(text.rstrip().split("\n")[max(0, line):]))
