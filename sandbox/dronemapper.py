"""DroneMapper stand-in: the WebODM-style REST API the vendor documents, offline and stateful.

Faithful to the contract (vendor doc + facts/webodm.md):
- JWT token-auth (HS256 with `exp`); an expired token is 403 {"detail": "Signature has expired."};
  other auth failures are 403 {"detail": ...} as WebODM answers them (configurable to 401).
- Projects (paginated only when ?page= is given), tasks (a bare list), DRF-shaped errors:
  {"detail": ...}, {"field": [...]} and ["..."] for a plain ValidationError.
- Tasks run null -> QUEUED -> RUNNING -> COMPLETED | FAILED on a clock read at each request
  (no threads); cancel/remove/restart set `pending_action`, which takes effect a moment later.
- The undocumented partial flow: create {partial: true} -> POST upload/ per image -> commit/.
- Assets are made on the fly, deterministic per task, streamed with a Content-Length:
  a real GeoTIFF orthophoto and DSM, a binary PLY point cloud, and all.zip holding them.

Sandbox-only checks (the brief's, not WebODM's): option names are validated against ODM's list,
and images must be JPEG.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import math
import random
import secrets
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

import numpy as np
from flask import Blueprint, Response, jsonify, request
from PIL import Image

from sandbox import geotiff
from sandbox.faults import drop_connection
from sandbox.vendor import VendorStandIn

QUEUED, RUNNING, FAILED, COMPLETED, CANCELED = 10, 20, 30, 40, 50
TERMINAL = (FAILED, COMPLETED, CANCELED)
CANCEL, REMOVE, RESTART = 1, 2, 3
EXPIRED = "Signature has expired."
JPEG_MAGIC = b"\xff\xd8\xff"
NODE = {"id": 1, "hostname": "node-odm-1", "port": 3000}
ODM_STAGES = ("dataset", "split", "merge", "opensfm", "openmvs", "odm_filterpoints", "odm_meshing",
              "mvs_texturing", "odm_georeferencing", "odm_dem", "odm_orthophoto", "odm_report", "odm_postprocess")
QUALITY = ("ultra", "high", "medium", "low", "lowest")

# ODM options a node accepts: name -> (type, default, domain).
ODM_OPTIONS: dict[str, tuple[str, Any, Any]] = {
    "3d-tiles": ("bool", False, None), "auto-boundary": ("bool", False, None),
    "build-overviews": ("bool", False, None), "camera-lens": ("enum", "auto", (
        "auto", "perspective", "brown", "fisheye", "fisheye_opencv", "spherical", "equirectangular", "dual")),
    "cog": ("bool", False, None), "crop": ("float", 3.0, None), "dem-decimation": ("int", 1, None),
    "dem-euclidean-map": ("bool", False, None), "dem-gapfill-steps": ("int", 3, None),
    "dem-resolution": ("float", 5.0, None), "dsm": ("bool", False, None), "dtm": ("bool", False, None),
    "end-with": ("enum", "odm_postprocess", ODM_STAGES), "fast-orthophoto": ("bool", False, None),
    "feature-quality": ("enum", "high", QUALITY),
    "feature-type": ("enum", "dspsift", ("akaze", "dspsift", "hahog", "orb", "sift")),
    "force-gps": ("bool", False, None), "gps-accuracy": ("float", 3.0, None), "ignore-gsd": ("bool", False, None),
    "matcher-neighbors": ("int", 0, None), "matcher-type": ("enum", "flann", ("bow", "bruteforce", "flann")),
    "max-concurrency": ("int", 4, None), "mesh-octree-depth": ("int", 11, None), "mesh-size": ("int", 200000, None),
    "min-num-features": ("int", 10000, None), "optimize-disk-space": ("bool", False, None),
    "orthophoto-compression": ("enum", "DEFLATE", ("JPEG", "LZW", "PACKBITS", "DEFLATE", "LZMA", "NONE")),
    "orthophoto-cutline": ("bool", False, None), "orthophoto-kmz": ("bool", False, None),
    "orthophoto-png": ("bool", False, None), "orthophoto-resolution": ("float", 5.0, None),
    "pc-classify": ("bool", False, None), "pc-csv": ("bool", False, None), "pc-ept": ("bool", False, None),
    "pc-filter": ("float", 5.0, None), "pc-las": ("bool", False, None), "pc-quality": ("enum", "medium", QUALITY),
    "pc-rectify": ("bool", False, None), "pc-sample": ("float", 0.0, None), "pc-skip-geometric": ("bool", False, None),
    "primary-band": ("string", "auto", None),
    "radiometric-calibration": ("enum", "none", ("none", "camera", "camera+sun")),
    "rerun-from": ("enum", "", ODM_STAGES), "resize-to": ("int", 2048, None),
    "sfm-algorithm": ("enum", "incremental", ("incremental", "triangulation", "planar")),
    "skip-3dmodel": ("bool", False, None), "skip-band-alignment": ("bool", False, None),
    "skip-orthophoto": ("bool", False, None), "skip-report": ("bool", False, None),
    "smrf-scalar": ("float", 1.25, None), "smrf-slope": ("float", 0.15, None),
    "smrf-threshold": ("float", 0.5, None), "smrf-window": ("float", 18.0, None),
    "split": ("int", 999999, None), "split-overlap": ("float", 150.0, None),
    "texturing-keep-unseen-faces": ("bool", False, None), "texturing-skip-global-seam-leveling": ("bool", False, None),
    "tiles": ("bool", False, None), "use-3dmesh": ("bool", False, None), "use-exif": ("bool", False, None),
    "use-fixed-camera-params": ("bool", False, None), "use-hybrid-bundle-adjustment": ("bool", False, None),
}

# Raw paths under a task's assets/ folder, and which downloadable asset each one is.
RAW_PATHS = {
    "odm_orthophoto/odm_orthophoto.tif": "orthophoto.tif",
    "odm_dem/dsm.tif": "dsm.tif",
    "odm_dem/dtm.tif": "dtm.tif",
    "odm_georeferencing/odm_georeferenced_model.ply": "pointcloud.ply",
}
CONTENT_TYPES = {".tif": "image/tiff", ".zip": "application/zip", ".png": "image/png"}


# --- errors in Django REST Framework's shapes ---

class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def not_found(detail: str = "Not found.") -> ApiError:
    return ApiError(404, {"detail": detail})


def invalid(body: Any) -> ApiError:
    """400 the way DRF renders it: {"field": ["msg"]}, or ["msg"] for a bare ValidationError."""
    return ApiError(400, body)


# --- JWT (HS256), as djangorestframework-jwt issues it ---

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_encode(payload: dict, secret: bytes) -> str:
    claims = json.dumps(payload, separators=(",", ":")).encode()
    signing_input = _b64(b'{"typ":"JWT","alg":"HS256"}') + "." + _b64(claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def jwt_decode(token: str, secret: bytes, now: float) -> dict:
    """The payload, or ApiError with djangorestframework-jwt's message."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise ValueError("bad signature")
        claims = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):
        raise ApiError(403, {"detail": "Error decoding signature."})
    if now >= float(claims.get("exp", 0)):
        raise ApiError(403, {"detail": EXPIRED})
    return claims


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


def _iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DroneMapperStandIn(VendorStandIn):
    name = "dronemapper"

    def default_options(self) -> dict[str, Any]:
        return {
            "users": {"sandbox": "sandbox-password"},
            "token_lifetime_s": 6 * 3600.0,       # WebODM's JWT_EXPIRATION_DELTA
            "unauthenticated_status": 403,        # WebODM answers 403; the vendor's table says 401
            "clock_offset_s": 0.0,                # the vendor's clock ahead of ours (tokens die early)
            "page_size": 10,
            # The task clock (seconds). Status is null while the images go to the node.
            "upload_to_node_s": 0.2,
            "queued_s": 0.5,
            "running_s": 3.0,
            "action_delay_s": 0.3,                # how long pending_action shows before it acts
            "console_lines": 60,                  # lines of a whole successful run
            # Failures: by task name (the first `fail_runs` runs), or by a seeded share of runs.
            "fail_tasks_named": [],
            "fail_runs": 1,
            "fail_rate": 0.0,
            "fail_at": 0.6,                       # share of the running time before the failure
            "fail_error": "Cannot process dataset",
            "seed": 0,
            "partial_upload": True,               # expose upload/ and commit/ (probe before relying on it)
            "jpeg_only": True,
            # Assets: the doc's names; pixel/point counts set their (deterministic) size.
            "assets": ["all.zip", "orthophoto.tif", "dsm.tif", "pointcloud.ply"],
            "asset_aliases": {"ORT-DrnMppr.tif": "orthophoto.tif"},  # the doc's quickstart name
            "orthophoto_px": 1024,
            "dsm_px": 512,
            "pointcloud_points": 100_000,
            "site_lonlat": [-96.70, 40.82],
            # Upload faults: read part of the body, then cut the connection.
            "upload_drop_next": 0,
            "upload_drop_rate": 0.0,
            "upload_drop_after_bytes": 65536,
            "short_download_next": 0,             # serve half of an asset, then close
        }

    def __init__(self, public_url: str = "") -> None:
        super().__init__(public_url)
        self.secret = secrets.token_bytes(32)
        self.reset_state()

    def reset_state(self) -> None:
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, Task] = {}
        self.next_project_id = 1
        self.next_task_id = 1
        self.rng = random.Random(0)

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"projects": len(self.projects), "tasks": {
                t.id: {"name": t.name, "status": t.status, "images": dict(t.images)} for t in self.tasks.values()}}

    # --- routing: DRF order is authenticate, then method check, then the handler ---

    def register(self, bp: Blueprint) -> None:
        bp.register_error_handler(ApiError, self._api_error)
        task = "/api/projects/<int:pid>/tasks/<int:tid>"
        routes = [
            ("/api/token-auth/", None, {"post": self._token_auth}),
            ("/api/projects/", "required", {"get": self._list_projects, "post": self._create_project}),
            ("/api/projects/<int:pid>/", "required", {
                "get": self._get_project, "patch": self._update_project, "put": self._update_project,
                "delete": self._delete_project}),
            ("/api/projects/<int:pid>/tasks/", "required", {"get": self._list_tasks, "post": self._create_task}),
            (f"{task}/", "optional", {"get": self._get_task, "patch": self._update_task, "put": self._update_task}),
            (f"{task}/cancel/", "required", {"post": lambda u, pid, tid: self._set_pending(u, pid, tid, CANCEL)}),
            (f"{task}/remove/", "required", {"post": lambda u, pid, tid: self._set_pending(u, pid, tid, REMOVE)}),
            (f"{task}/restart/", "required", {"post": lambda u, pid, tid: self._set_pending(u, pid, tid, RESTART)}),
            (f"{task}/upload/", "required", {"post": self._upload}),
            (f"{task}/commit/", "required", {"post": self._commit}),
            (f"{task}/output/", "required", {"get": self._output}),
            (f"{task}/download/<path:asset>", "optional", {"get": self._download}),
            (f"{task}/assets/<path:path>", "optional", {"get": self._raw_asset}),
            (f"{task}/<layer>/tiles.json", "optional", {"get": self._tiles_json}),
            (f"{task}/<layer>/tiles/<int:z>/<int:x>/<int:y>.png", "optional", {"get": self._tile}),
            ("/api/processingnodes/", "required", {"get": self._processing_nodes}),
            ("/api/processingnodes/options/", "required", {"get": self._node_options}),
        ]
        for number, (rule, auth, handlers) in enumerate(routes):
            bp.add_url_rule(rule, f"route{number}", self._view(rule, auth, handlers),
                            methods=["GET", "POST", "PUT", "PATCH", "DELETE"])

    def _view(self, rule: str, auth: str | None, handlers: dict[str, Callable]) -> Callable:
        def view(**kwargs):
            if rule.endswith(("/upload/", "/commit/")) and not self.options["partial_upload"]:
                return _django_404()
            user = self._authenticate(auth) if auth else None
            handler = handlers.get(request.method.lower())
            if handler is None:
                raise ApiError(405, {"detail": f'Method "{request.method}" not allowed.'})
            return handler(user, **kwargs) if auth else handler(**kwargs)
        return view

    def _api_error(self, exc: ApiError) -> Response:
        _discard_body()  # as nginx does, so the client reads the answer instead of a reset
        response = jsonify(exc.body)
        response.status_code = exc.status
        return response

    # --- auth ---

    def _token_auth(self) -> Response:
        data = _request_data()
        missing = {k: ["This field is required."] for k in ("username", "password") if not data.get(k)}
        if missing:
            raise invalid(missing)
        username = str(data["username"])
        if self.options["users"].get(username) != data["password"]:
            raise invalid({"non_field_errors": ["Unable to log in with provided credentials."]})
        exp = int(self._vendor_time() + float(self.options["token_lifetime_s"]))
        user_id = sorted(self.options["users"]).index(username) + 1
        token = jwt_encode({"user_id": user_id, "username": username, "exp": exp, "email": ""}, self.secret)
        self.calls.add("token", username)
        return jsonify({"token": token})

    def _authenticate(self, auth: str) -> str | None:
        """The username; None for an anonymous caller where the view allows one (it then sees 404s)."""
        header = request.headers.get("Authorization", "").split()
        token = None
        if header and header[0].lower() == "jwt":
            if len(header) != 2:
                self.calls.add("auth_rejected", "invalid")
                problem = ("No credentials provided." if len(header) == 1
                           else "Credentials string should not contain spaces.")
                raise ApiError(403, {"detail": f"Invalid Authorization header. {problem}"})
            token = header[1]
        elif request.args.get("jwt"):
            token = request.args["jwt"]
        if token is None:
            if auth == "optional":
                return None
            self.calls.add("auth_rejected", "missing")
            raise ApiError(int(self.options["unauthenticated_status"]),
                           {"detail": "Authentication credentials were not provided."})
        try:
            claims = jwt_decode(token, self.secret, self._vendor_time())
        except ApiError as exc:
            self.calls.add("auth_rejected", "expired" if exc.body["detail"] == EXPIRED else "invalid")
            raise
        if claims.get("username") not in self.options["users"]:
            self.calls.add("auth_rejected", "invalid")
            raise ApiError(403, {"detail": "Invalid signature."})
        return claims["username"]

    def _vendor_time(self) -> float:
        return time.time() + float(self.options["clock_offset_s"])

    # --- projects ---

    def _project(self, user: str | None, pid: int) -> dict:
        project = self.projects.get(pid)
        if project is None or project["owner"] != user:
            raise not_found()  # another user's project is hidden, not forbidden
        return project

    def _project_json(self, project: dict) -> dict:
        task_ids = [t.id for t in self.tasks.values() if t.project == project["id"]]
        return {"id": project["id"], "tasks": task_ids, "created_at": project["created_at"],
                "name": project["name"], "description": project["description"],
                "permissions": ["delete", "change", "add", "view"]}

    def _create_project(self, user: str) -> Response:
        fields = _project_fields(_request_data(), require_name=True)
        with self.lock:
            project = {"id": self.next_project_id, "owner": user, "created_at": _iso_now(),
                       "name": fields["name"], "description": fields.get("description", "")}
            self.next_project_id += 1
            self.projects[project["id"]] = project
            self.calls.add("project_create", project["name"])
            return _json(self._project_json(project), 201)

    def _get_project(self, user: str, pid: int) -> Response:
        with self.lock:
            return _json(self._project_json(self._project(user, pid)))

    def _update_project(self, user: str, pid: int) -> Response:
        fields = _project_fields(_request_data(), require_name=request.method == "PUT")
        with self.lock:
            project = self._project(user, pid)
            project.update(fields)
            return _json(self._project_json(project))

    def _delete_project(self, user: str, pid: int) -> Response:
        with self.lock:
            self._project(user, pid)
            del self.projects[pid]
            for task_id in [t.id for t in self.tasks.values() if t.project == pid]:
                del self.tasks[task_id]
            self.calls.add("project_delete", str(pid))
        return Response(status=204)

    def _list_projects(self, user: str) -> Response:
        args = request.args
        with self.lock:
            rows = [self._project_json(p) for p in self.projects.values() if p["owner"] == user]
        for key in ("id", "name", "description", "created_at"):
            if args.get(key):
                rows = [r for r in rows if str(r[key]) == args[key]]
        if args.get("search"):
            needle = args["search"].lower()
            rows = [r for r in rows if needle in r["name"].lower() or needle in r["description"].lower()]
        rows = _ordered(rows, args.get("ordering") or "-created_at")
        if "page" not in args:
            return _json(rows)  # WebODM paginates only when asked to
        return _json(_page(rows, args.get("page", ""), int(self.options["page_size"])))

    # --- tasks ---

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
                fields["options"] = _validate_options(data["options"], from_form=not request.is_json)
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
            for chunk in iter(lambda: upload.stream.read(1 << 20), b""):
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

    # --- the task clock ---

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

    # --- assets ---

    def _completed_task(self, user: str | None, pid: int, tid: int, asset: str) -> Task:
        with self.lock:
            task = self._task(user, pid, tid)
            if asset not in task.available_assets:
                raise not_found("Asset does not exist")
            return task

    def _download(self, user: str | None, pid: int, tid: int, asset: str) -> Response:
        asset = self.options["asset_aliases"].get(asset, asset)
        task = self._completed_task(user, pid, tid, asset)
        self.calls.add("asset_download", f"{tid}/{asset}")
        return self._stream(self._make_asset(task, asset), asset, "attachment")

    def _raw_asset(self, user: str | None, pid: int, tid: int, path: str) -> Response:
        asset = "all.zip" if path == "all.zip" else RAW_PATHS.get(path)
        if asset is None:
            with self.lock:
                self._task(user, pid, tid)
            raise not_found("Asset does not exist")
        task = self._completed_task(user, pid, tid, asset)
        self.calls.add("asset_download", f"{tid}/{path}")
        return self._stream(self._make_asset(task, asset), path.rsplit("/", 1)[-1], "inline")

    def _make_asset(self, task: Task, asset: str):
        site = Site.of(task, self.options)
        if asset == "orthophoto.tif":
            return site.orthophoto()
        if asset in ("dsm.tif", "dtm.tif"):
            return site.elevation_model(ground_only=asset == "dtm.tif")
        if asset == "pointcloud.ply":
            return site.point_cloud()
        if asset == "all.zip":
            members = [(path, self._make_asset(task, a)) for path, a in RAW_PATHS.items() if a in task.available_assets]
            return StoredZip(members)
        raise not_found("Asset does not exist")

    def _stream(self, body, filename: str, disposition: str) -> Response:
        chunks = body.chunks()
        with self.lock:
            short = self.options["short_download_next"] > 0
            if short:
                self.options["short_download_next"] -= 1
        if short:
            self.calls.add("download_cut", filename)
            chunks = _cut_after(chunks, body.size // 2, request.environ.get("werkzeug.socket"))
        suffix = filename[filename.rfind("."):].lower()
        return Response(chunks, direct_passthrough=True, headers={
            "Content-Length": str(body.size),
            # mimetypes knows no .ply: WebODM falls back to application/zip for it
            "Content-Type": CONTENT_TYPES.get(suffix, "application/zip"),
            "Content-Disposition": f"{disposition}; filename={filename}",
        })

    # --- tiles ---

    def _tiles_json(self, user: str | None, pid: int, tid: int, layer: str) -> Response:
        task = self._tiled_task(user, pid, tid, layer)
        site = Site.of(task, self.options)
        minzoom, maxzoom = site.zoom_range()
        self.calls.add("tiles_json", f"{tid}/{layer}")
        return _json({"tilejson": "2.1.0", "name": task.name, "version": "1.0.0", "scheme": "xyz",
                      "tiles": [f"/api/projects/{pid}/tasks/{tid}/{layer}/tiles/{{z}}/{{x}}/{{y}}.png"],
                      "minzoom": minzoom, "maxzoom": maxzoom, "bounds": site.bounds()})

    def _tile(self, user: str | None, pid: int, tid: int, layer: str, z: int, x: int, y: int) -> Response:
        task = self._tiled_task(user, pid, tid, layer)
        png = Site.of(task, self.options).tile(layer, z, x, y)
        if png is None:
            raise not_found("Outside of bounds")
        return Response(png, mimetype="image/png")

    def _tiled_task(self, user, pid, tid, layer) -> Task:
        with self.lock:
            task = self._task(user, pid, tid)
            if layer not in ("orthophoto", "dsm", "dtm") or f"{layer}.tif" not in task.available_assets:
                raise not_found()
            return task

    # --- processing nodes ---

    def _node_json(self) -> dict:
        with self.lock:
            now = time.monotonic()
            busy = sum(1 for t in list(self.tasks.values()) if self._advance(t, now) and t.run is not None)
        return {**NODE, "label": f"{NODE['hostname']}:{NODE['port']}", "online": True, "queue_count": busy,
                "max_images": None, "engine": "odm", "engine_version": "3.5.4", "api_version": "2.2.4",
                "last_refreshed": _iso_now(), "available_options": _option_descriptions()}

    def _processing_nodes(self, user: str) -> Response:
        return _json([self._node_json()])

    def _node_options(self, user: str) -> Response:
        return _json(_option_descriptions())


# --- request and response helpers ---

def _json(data: Any, status: int = 200) -> Response:
    response = jsonify(data)
    response.status_code = status
    return response


def _django_404() -> Response:
    """What a WebODM without the route answers: Django's page, not JSON."""
    _discard_body()
    return Response("<h1>Not Found</h1><p>The requested resource was not found on this server.</p>",
                    status=404, mimetype="text/html")


def _discard_body() -> None:
    try:
        while request.stream.read(1 << 16):
            pass
    except (OSError, ValueError):
        pass


def _request_data():
    """Form fields or a JSON object, as DRF's parsers give `request.data`."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise invalid({"detail": "JSON parse error"})
        return data
    request.max_form_parts = None  # Django 2.2 (WebODM's) has no cap on the number of files
    return request.form


def _request_files() -> list:
    if request.is_json:
        return []
    request.max_form_parts = None
    return [f for key in request.files for f in request.files.getlist(key)]  # any field name counts


def _project_fields(data, require_name: bool) -> dict:
    fields = {k: str(data[k]) for k in ("name", "description") if k in data}
    if require_name and "name" not in fields:
        raise invalid({"name": ["This field is required."]})
    if "name" in fields and not fields["name"].strip():
        raise invalid({"name": ["This field may not be blank."]})
    return fields


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "1", "yes", "on") else False if text in ("false", "0", "no", "off", "") else None


def _validate_options(raw: Any, from_form: bool) -> list[dict]:
    """[{name, value}, ...]. WebODM's own check rejects a falsy value ("Invalid options");
    the name and value checks are NodeODM's, brought forward so the error names the option."""
    if isinstance(raw, str):
        if not from_form:
            raise ValueError("Invalid options")  # in a JSON body the list itself, not a string of it
        try:
            raw = json.loads(raw or "[]")
        except ValueError:
            raise ValueError("Value must be valid JSON.")
    if not isinstance(raw, list) or not all(isinstance(o, dict) and o.get("name") and o.get("value") for o in raw):
        raise ValueError("Invalid options")
    for option in raw:
        name, value = option["name"], option["value"]
        if name not in ODM_OPTIONS:
            raise ValueError(f"Unknown option: {name}")
        kind, _default, domain = ODM_OPTIONS[name]
        if not _valid_value(kind, domain, value):
            expected = f"one of {', '.join(domain)}" if kind == "enum" else f"a {kind}"
            raise ValueError(f"Invalid value for option {name}: {value!r} (expected {expected})")
    return [{"name": o["name"], "value": o["value"]} for o in raw]


def _valid_value(kind: str, domain: Any, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool) or (isinstance(value, str) and _as_bool(value) is not None)
    if kind in ("int", "float"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return kind == "float" or number == int(number)
    if kind == "enum":
        return value in domain
    return isinstance(value, str)


def _option_descriptions() -> list[dict]:
    return [{"name": name, "type": kind, "value": default if kind != "enum" else str(default),
             "domain": list(domain) if domain else "", "help": f"ODM option {name}"}
            for name, (kind, default, domain) in sorted(ODM_OPTIONS.items())]


def _ordered(rows: list[dict], ordering: str) -> list[dict]:
    for key in reversed([k.strip() for k in ordering.split(",") if k.strip()]):
        name = key.lstrip("-")
        if rows and name in rows[0]:  # DRF ignores fields it cannot order by
            rows = sorted(rows, key=lambda r: (r[name] is None, r[name]), reverse=key.startswith("-"))
    return rows


def _page(rows: list[dict], page: str, size: int) -> dict:
    pages = max(1, math.ceil(len(rows) / size))
    if not page.isdigit() or not 1 <= int(page) <= pages:
        raise not_found("Invalid page.")
    number = int(page)

    def link(n: int) -> str:
        query = {k: v for k, v in request.args.items() if k != "page"}
        if n > 1:
            query["page"] = str(n)
        return request.base_url + ("?" + urlencode(query) if query else "")

    return {"count": len(rows), "next": link(number + 1) if number < pages else None,
            "previous": link(number - 1) if number > 1 else None,
            "results": rows[(number - 1) * size: number * size]}


def _show_progress(task: Task, run: Run, running: float) -> None:
    """Progress, processing time and console output `running` seconds into RUNNING."""
    share = min(1.0, running / run.running_s)
    node_share = min(1.0, share / 0.9)  # node progress x 0.85; the last tenth is WebODM pulling results
    task.running_progress = 0.85 * node_share + 0.10 * max(0.0, (share - 0.9) / 0.1)
    task.processing_time = int(min(running, 0.9 * run.running_s) * 1000)
    task.console = run.script[: int(len(run.script) * node_share)]


def _cut_after(chunks: Iterator[bytes], limit: int, sock) -> Iterator[bytes]:
    """Send `limit` bytes of a body announced whole, then close: a short read for the client."""
    sent = 0
    for chunk in chunks:
        chunk = chunk[: limit - sent]
        sent += len(chunk)
        yield chunk
        if sent >= limit:
            break
    if sock is not None:
        import socket
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _console_script(task: Task, total: int) -> list[str]:
    """Console output of a whole run, ODM-like: the images, then each stage of the pipeline."""
    lines = [f"[INFO]    Initializing ODM 3.5.4 - {datetime.now(timezone.utc):%a %b %d %H:%M:%S %Y}",
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
    return lines[: total - 1] + ["[INFO]    ODM app finished - " + f"{datetime.now(timezone.utc):%a %b %d %H:%M:%S %Y}"]


# --- the surveyed site: what every asset of a task shows, the same at every request ---

class Site:
    """A patch of farmland under a task: colours, elevations and its place on Earth."""

    def __init__(self, seed: int, lonlat: tuple[float, float], width_px: int, gsd_m: float,
                 options: dict[str, Any]) -> None:
        self.seed, self.options = seed, options
        self.width_px = self.height_px = width_px
        self.gsd_m = gsd_m
        self.extent_m = width_px * gsd_m
        easting, northing, self.epsg = geotiff.lonlat_to_utm(*lonlat)
        self.origin = (round(easting - self.extent_m / 2, 2), round(northing + self.extent_m / 2, 2))

    @classmethod
    def of(cls, task: Task, options: dict[str, Any]) -> "Site":
        chosen = {o["name"]: o["value"] for o in task.options}
        gsd_cm = float(chosen.get("orthophoto-resolution", 5.0))
        lon, lat = options["site_lonlat"]
        lonlat = (lon + 0.01 * (task.id % 50), lat + 0.005 * (task.id // 50 % 50))  # each task its own field
        return cls(task.id, lonlat, int(options["orthophoto_px"]), gsd_cm / 100.0, options)

    # normalised coordinates u (west->east) and v (north->south) in [0, 1]
    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = u + v  # the flight area is a square with two corners cut off
        return (s > 0.15) & (s < 1.85)

    def colour(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        fields = np.floor(u * 5 + 0.3 * np.sin(v * 7 + self.seed)) + 7 * np.floor(v * 4)
        base = np.stack([60 + 25 * np.sin(fields * 1.7 + self.seed), 110 + 30 * np.cos(fields * 2.3),
                         50 + 20 * np.sin(fields * 0.9)], axis=-1)
        rows = 12 * np.sin(2 * np.pi * (u * 60 + v * 9))[..., None]  # crop rows
        grain = _hash_noise(u, v, self.seed)[..., None] * 14 - 7
        return np.clip(base + rows + grain, 0, 255).astype(np.uint8)

    def elevation(self, u: np.ndarray, v: np.ndarray, ground_only: bool = False) -> np.ndarray:
        ground = 310 + 6 * np.sin(2 * np.pi * (0.7 * u + self.seed * 0.1)) * np.cos(2 * np.pi * 0.5 * v) + 4 * u
        if ground_only:
            return ground.astype(np.float32)
        trees = 9 * np.clip(np.sin(u * 41 + self.seed) * np.sin(v * 37) - 0.85, 0, None) / 0.15
        return (ground + trees).astype(np.float32)

    def _grid(self, row0: int, rows: int, width: int, height: int):
        v = (np.arange(row0, row0 + rows, dtype=np.float64)[:, None] + 0.5) / height
        u = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / width
        return np.broadcast_to(u, (rows, width)), np.broadcast_to(v, (rows, width))

    def orthophoto(self) -> geotiff.GeoTiff:
        w = h = self.width_px

        def pixels(row0: int, rows: int) -> np.ndarray:
            u, v = self._grid(row0, rows, w, h)
            alpha = np.where(self.inside(u, v), 255, 0).astype(np.uint8)[..., None]
            return np.concatenate([self.colour(u, v) * (alpha > 0), alpha], axis=-1)

        return geotiff.GeoTiff(w, h, 4, "uint8", self.origin, self.gsd_m, self.epsg, pixels)

    def elevation_model(self, ground_only: bool = False) -> geotiff.GeoTiff:
        w = h = int(self.options["dsm_px"])

        def pixels(row0: int, rows: int) -> np.ndarray:
            u, v = self._grid(row0, rows, w, h)
            z = np.where(self.inside(u, v), self.elevation(u, v, ground_only), -9999.0)
            return z.astype(np.float32)[..., None]

        return geotiff.GeoTiff(w, h, 1, "float32", self.origin, self.extent_m / w, self.epsg, pixels, nodata=-9999)

    def point_cloud(self) -> "PointCloud":
        return PointCloud(self, int(self.options["pointcloud_points"]))

    def bounds(self) -> list[float]:
        corners = [geotiff.utm_to_lonlat(self.origin[0] + dx, self.origin[1] - dy, self.epsg)
                   for dx in (0, self.extent_m) for dy in (0, self.extent_m)]
        lons, lats = [c[0] for c in corners], [c[1] for c in corners]
        return [round(min(lons), 8), round(min(lats), 8), round(max(lons), 8), round(max(lats), 8)]

    def zoom_range(self) -> tuple[int, int]:
        lat = math.radians(self.bounds()[1])
        metres_at_zoom0 = 156543.03392 * math.cos(lat)
        maxzoom = math.ceil(math.log2(metres_at_zoom0 / self.gsd_m))
        return max(0, maxzoom - math.ceil(math.log2(max(1, self.width_px / 256))) - 1), maxzoom

    def tile(self, layer: str, z: int, x: int, y: int) -> bytes | None:
        """A 256 px XYZ tile, or None outside the site."""
        def lonlat(tx: float, ty: float) -> tuple[float, float]:
            n = 2 ** z
            return tx / n * 360 - 180, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * ty / n))))

        def uv(tx: float, ty: float) -> tuple[float, float]:
            e, n, _ = geotiff.lonlat_to_utm(*lonlat(tx, ty), epsg=self.epsg)
            return (e - self.origin[0]) / self.extent_m, (self.origin[1] - n) / self.extent_m

        (u0, v0), (u1, v1) = uv(x, y), uv(x + 1, y + 1)
        if u1 < 0 or u0 > 1 or v1 < 0 or v0 > 1:
            return None
        t = (np.arange(256) + 0.5) / 256  # a tile is small: map its pixels linearly between the corners
        u = np.broadcast_to(u0 + (u1 - u0) * t[None, :], (256, 256))
        v = np.broadcast_to(v0 + (v1 - v0) * t[:, None], (256, 256))
        visible = self.inside(u, v) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        if layer == "orthophoto":
            rgb = self.colour(u, v)
        else:
            z_norm = np.clip((self.elevation(u, v, layer == "dtm") - 300) / 30, 0, 1)[..., None]
            rgb = (np.concatenate([z_norm, 1 - np.abs(z_norm - 0.5) * 2, 1 - z_norm], axis=-1) * 255).astype(np.uint8)
        rgba = np.concatenate([rgb, np.where(visible, 255, 0).astype(np.uint8)[..., None]], axis=-1)
        out = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(out, format="PNG")
        return out.getvalue()


def _hash_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic per-position noise in [0, 1): an integer hash of the position."""
    xi = (u * 1e5).astype(np.int64).astype(np.uint32)
    yi = (v * 1e5).astype(np.int64).astype(np.uint32)
    h = xi * np.uint32(73856093) ^ yi * np.uint32(19349663) ^ np.uint32(seed * 83492791 & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    return (h & np.uint32(0xFFFF)).astype(np.float64) / 65536.0


class PointCloud:
    """A binary little-endian PLY of the site's surface, made in blocks."""

    BLOCK = 65536
    VERTEX = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])

    def __init__(self, site: Site, points: int) -> None:
        self.site, self.points = site, points
        self.header = (
            "ply\nformat binary_little_endian 1.0\ncomment generated by the geoqueue DroneMapper sandbox\n"
            f"comment crs EPSG:{site.epsg}\nelement vertex {points}\nproperty double x\nproperty double y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n").encode()
        self.size = len(self.header) + points * self.VERTEX.itemsize

    def chunks(self) -> Iterator[bytes]:
        yield self.header
        site = self.site
        for block, start in enumerate(range(0, self.points, self.BLOCK)):
            count = min(self.BLOCK, self.points - start)
            rng = np.random.default_rng([site.seed, block])
            u, v = rng.random(count), rng.random(count)
            shift = np.where(u + v < 0.15, 0.5, np.where(u + v > 1.85, -0.5, 0.0))  # fold cut corners inside
            u, v = u + shift, v + shift
            vertices = np.empty(count, self.VERTEX)
            vertices["x"] = site.origin[0] + u * site.extent_m
            vertices["y"] = site.origin[1] - v * site.extent_m
            vertices["z"] = site.elevation(u, v)
            rgb = site.colour(u, v)
            vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
            yield vertices.tobytes()


class StoredZip:
    """A zip of (name, member) pairs, uncompressed and streamed: CRCs go in data descriptors,
    so the size is known before any member is made (like WebODM's sized zipstream)."""

    DOS_TIME, DOS_DATE = 0, (2024 - 1980) << 9 | 1 << 5 | 1

    def __init__(self, members: list[tuple[str, Any]]) -> None:
        self.members = members
        self.size = sum(30 + len(n.encode()) + m.size + 16 + 46 + len(n.encode()) for n, m in members) + 22

    def chunks(self) -> Iterator[bytes]:
        central, offset = [], 0
        for name, member in self.members:
            raw = name.encode()
            local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x08, 0, self.DOS_TIME, self.DOS_DATE,
                                0, 0, 0, len(raw), 0) + raw
            yield local
            crc, written = 0, 0
            for chunk in member.chunks():
                crc = zlib.crc32(chunk, crc)
                written += len(chunk)
                yield chunk
            yield struct.pack("<IIII", 0x08074B50, crc, written, written)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x08, 0, self.DOS_TIME,
                                       self.DOS_DATE, crc, written, written, len(raw), 0, 0, 0, 0, 0, offset) + raw)
            offset += len(local) + written + 16
        directory = b"".join(central)
        yield directory
        yield struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0)


STAND_IN = DroneMapperStandIn
