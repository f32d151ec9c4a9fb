"""DroneMapper stand-in: the REST API of the vendor's document (docs/vendors/dronemapper.md), offline and stateful.

The vendor's document is the contract; where it is silent, WebODM (which the document copies, see
docs/vendors/dronemapper.md#dronemapper-is-webodm) fills in. What it does:
- JWT token-auth (HS256 with `exp`). No credentials: 401, as the document's "Error Status Codes"
  table says; an expired token: 403 {"detail": "Signature has expired."} ("Token Expiration").
- Projects listed as the document's paginated object {count, next, previous, results}; tasks as a
  bare list ("Get list of tasks"). Errors in DRF's shapes: {"detail": ...}, {"field": [...]}, ["..."].
- Task options: any JSON list of name/value pairs, as "Create a task" describes them; the
  quickstart's own [{"name": "null", "value": "null"}] is accepted.
- Tasks run null -> QUEUED -> RUNNING -> COMPLETED | FAILED on a clock read at each request
  (no threads); cancel/remove/restart set `pending_action`, which takes effect a moment later.
- Assets are made on the fly, deterministic per task, streamed with a Content-Length:
  a real GeoTIFF orthophoto and DSM, a binary PLY point cloud, and all.zip holding them.

Deliberate departures from the document (each also commented where it is made):
- WebODM's undocumented partial flow (create {partial: true} -> upload/ per image -> commit/) and
  /api/processingnodes/ are served, so the fleet's probes for them find something to probe;
  `partial_upload: false` takes the partial flow away.
- Options that reproduce WebODM where it differs from the document, for clients that must cope
  with either: `unauthenticated_status: 403`, `projects_pagination: "when_asked"`, and stricter
  option checks (`option_checks: "webodm"` or `"odm"`); `jpeg_only` refuses other images.

This module holds the stand-in's options and routing; its parts live beside it, one concern each:
dronemapper_auth (token-auth, JWT), dronemapper_projects, dronemapper_tasks (tasks, images, actions),
dronemapper_processing (the task clock), dronemapper_assets (downloads, all.zip, tiles),
dronemapper_site (the synthetic survey behind the assets), dronemapper_options (ODM options),
dronemapper_api (DRF error shapes, request helpers).
"""
from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.dronemapper_api import ApiError, _discard_body, _django_404, _iso_now, _json
from sandbox.dronemapper_assets import AssetRoutes
from sandbox.dronemapper_auth import AuthRoutes
from sandbox.dronemapper_options import _option_descriptions
from sandbox.dronemapper_processing import CANCEL, NODE, REMOVE, RESTART, Processing, Task
from sandbox.dronemapper_projects import ProjectRoutes
from sandbox.dronemapper_tasks import TaskRoutes
from sandbox.vendor import VendorStandIn


class DroneMapperStandIn(AuthRoutes, ProjectRoutes, TaskRoutes, Processing, AssetRoutes, VendorStandIn):
    name = "dronemapper"

    def default_options(self) -> dict[str, Any]:
        return {
            "users": {"sandbox": "sandbox-password"},
            "token_lifetime_s": 6 * 3600.0,       # WebODM's JWT_EXPIRATION_DELTA
            # The document's "Error Status Codes" table: 401 Unauthenticated. WebODM itself answers 403
            # (docs/vendors/dronemapper.md#why-403-not-401); set 403 to play that server.
            "unauthenticated_status": 401,
            "clock_offset_s": 0.0,                # the vendor's clock ahead of ours (tokens die early)
            "page_size": 10,                      # WebODM's PAGE_SIZE; the document names none
            # "always": the document's "Get list of projects" object {count, next, previous, results}.
            # "when_asked": WebODM's bare list unless ?page= (docs/vendors/dronemapper.md#project-list-pagination).
            "projects_pagination": "always",
            # "document": any JSON list of name/value pairs ("Create a task"; the quickstart sends
            # {"name": "null", "value": "null"}). Stricter, neither documented: "webodm" also refuses a
            # falsy value ("Invalid options"), "odm" also names and values outside ODM's option list.
            "option_checks": "document",
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
            # Departs from "Create a task", which documents only the one-shot upload: WebODM's partial
            # flow (upload/, commit/) is served so the client's probe for it has something to find;
            # false answers those routes with Django's 404, as a server without them would.
            "partial_upload": True,
            # "Create a task" says "multipart-encoded images", no format: any file is taken. True
            # refuses all but JPEG (as a fault, for tests of what the fleet does with a 400 naming it).
            "jpeg_only": False,
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
            # "Orthomosaic TMS layer", "Digital Elevation Model TMS layer"; dtm too, as WebODM serves it.
            (f"{task}/<layer>/tiles.json", "optional", {"get": self._tiles_json}),
            (f"{task}/<layer>/tiles/<int:z>/<int:x>/<int:y>.png", "optional", {"get": self._tile}),
            # Not in the document: WebODM's routes (docs/vendors/dronemapper.md#processing-nodes), served because
            # the fleet reads the option names from them; a DroneMapper without them answers 404.
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
        response.headers.update(exc.headers)
        return response

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


STAND_IN = DroneMapperStandIn
