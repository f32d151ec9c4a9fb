"""Mapillary stand-in: Graph API v4, coverage vector tiles, signed CDN thumbnails, the offset-resumable
upload service and the legacy S3 form upload, over a synthetic world (sandbox.mapillary_world).

Sub-prefixes under /mapillary mirror the real hosts, so a client only swaps base URLs:

    /mapillary/graph/...                               graph.mapillary.com
    /mapillary/tiles/maps/vtp/mly1_public/2/{z}/{x}/{y} tiles.mapillary.com
    /mapillary/cdn/m1/v/t6/{opaque}?oh=..&oe=..        scontent-*.fbcdn.net (signed, expiring)
    /mapillary/rupload/mapillary_public_uploads/{key}   rupload.facebook.com
    /mapillary/s3/{bucket}                             s3-eu-west-1.amazonaws.com (legacy form POST)

Error shapes follow docs/vendors/mapillary.md: Graph errors are {"error": {message, type, code, fbtrace_id}},
code 190 for a bad token (HTTP status configurable: the real service sometimes answers 500);
the upload service answers {"backoff": ms, "debug_info": {retriable, type, message}}; S3 answers XML.
Where the notes give no shape (a missing id, a Graph rate limit) the stand-in follows the
Facebook Graph convention: code 100/subcode 33, code 803 for a batch, code 4 for the app limit.

Against the documents (the toolset's README and the legacy upload notes, in docs/vendors/mapillary.md):
- thumbnail URLs live for days, as the README's sample CSV URLs do; short lifetimes are a fault
  to inject (`thumbnail_lifetime_s`), for the refresh path;
- the legacy form upload refuses fields out of order (the document: "maybe a 400"), a wrong acl or
  Content-Type ("must be"); its key layout is checked only on request (`legacy_key_layout_check`);
  EXIF is not checked at upload: the document names what a photo must carry, not that S3 refuses it.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import json
import math
import re
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

from sandbox import mapillary_world as mw
from sandbox.faults import drop_connection
from sandbox.vendor import VendorStandIn

GRAPH_ERROR_TYPE = "MLYApiException"
AUTH_ERROR_CODE = 190
APP_RATE_LIMIT_CODE = 4
NONEXISTENT_CODE, NONEXISTENT_SUBCODE = 100, 33
MISSING_ALIASES_CODE = 803

THUMBNAIL_WIDTHS = {"thumb_256_url": 256, "thumb_1024_url": 1024, "thumb_2048_url": 2048, "thumb_original_url": None}
IMAGE_FIELDS = frozenset({
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at", "compass_angle",
    "computed_altitude", "computed_compass_angle", "computed_geometry", "computed_rotation", "creator",
    "detections", "exif_orientation", "geometry", "height", "is_pano", "make", "merge_cc", "mesh", "model",
    "quality_score", "sequence", "sfm_cluster", "width", *THUMBNAIL_WIDTHS,
})
ORGANIZATION_FIELDS = frozenset({"id", "slug", "name", "description"})
USER_FIELDS = frozenset({"id", "username"})
TILESETS = {"mly1_public": False, "mly1_computed_public": True}   # name -> uses computed geometry
SEARCH_LIMIT = 2000
SEARCH_MAX_RADIUS_M = 50

UPLOAD_PATH = "mapillary_public_uploads"
CLUSTER_FILE_TYPES = ("zip", "mly_blackvue_video", "mly_camm_video", "mly_bundle_manifest")
LEGACY_FIELD_ORDER = ("AWSAccessKeyId", "acl", "key", "signature", "policy", "Content-Type", "file")
LEGACY_BUCKETS = ("mapillary.uploads.images", "mapillary.uploads.manual.images")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
LEGACY_KEY = re.compile(rf"^(?P<username>[^/]+)/(?P<uuid>{UUID4})/(?P<filename>[^/]+)$")

SANDBOX_CLIENT_TOKEN = "MLY|4242424242424242|sandbox-client-token"
SANDBOX_USER_TOKEN = "MLY|4242424242424242|sandbox-user-token"
SIGNING_KEY = b"geoqueue-sandbox-fbcdn"


# --- response shapes ---

def graph_error(status: int, message: str, code: int, *, error_type: str = GRAPH_ERROR_TYPE,
                subcode: int | None = None, retry_after_s: float | None = None, **extra: Any) -> Response:
    error = {"message": message, "type": error_type, "code": code, **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    trace = hashlib.sha1(f"{time.time_ns()}".encode()).digest()[:8]
    error["fbtrace_id"] = base64.urlsafe_b64encode(trace).decode().rstrip("=")
    response = jsonify({"error": error})
    response.status_code = status
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(math.ceil(retry_after_s))
    return response


def upload_error(status: int, error_type: str, message: str, *, retriable: bool,
                 backoff_ms: int | None = None) -> Response:
    body: dict[str, Any] = {"debug_info": {"retriable": retriable, "type": error_type, "message": message}}
    if backoff_ms is not None:
        body = {"backoff": backoff_ms, **body}
    response = jsonify(body)
    response.status_code = status
    if backoff_ms is not None:
        response.headers["Retry-After"] = str(math.ceil(backoff_ms / 1000))
    return response


def s3_error(status: int, code: str, message: str, **details: str) -> Response:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in details.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message>{extra}<RequestId>SANDBOX</RequestId></Error>")
    return Response(body, status=status, mimetype="application/xml")


def _sign(*parts: str) -> str:
    return hmac.new(SIGNING_KEY, ":".join(parts).encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=256)
def _cached_tile(world: mw.World, computed: bool, z: int, x: int, y: int) -> bytes:
    return mw.coverage_tile(world, z, x, y, computed=computed)


@dataclass
class UploadSession:
    key: str
    created: float
    data: bytearray = field(default_factory=bytearray)
    declared_length: int | None = None
    entity_type: str | None = None
    handle: str | None = None


class MapillaryStandIn(VendorStandIn):
    name = "mapillary"

    def default_options(self) -> dict[str, Any]:
        return {
            # The world (changing any of these rebuilds it).
            "seed": mw.DEFAULT_SEED,
            "world_scale": 1.0,                 # multiplies the number of sequences
            "long_sequence_images": 0,          # > 0: one more organization, with one sequence of this many images
            "center_lon": mw.DEFAULT_CENTER[0],
            "center_lat": mw.DEFAULT_CENTER[1],
            "region_km": mw.DEFAULT_REGION_KM,
            # Who may call: client tokens read; user tokens read and upload.
            "client_tokens": [SANDBOX_CLIENT_TOKEN],
            "user_tokens": {SANDBOX_USER_TOKEN: "sandbox_uploader"},
            "auth_error_http_status": 401,      # 500 reproduces the vendor's code-190-on-HTTP-500 quirk
            # Limits: requests per window per family (0: unlimited), and the status a limit answers with.
            "graph_rate_limit": 0,
            "tiles_rate_limit": 0,
            "upload_rate_limit": 0,
            "rate_limit_window_s": 60.0,
            "rate_limit_http_status": 429,      # the upload service also sends its 429 body with HTTP 400
            "deleted_image_ids": [],            # images Graph no longer resolves, though tiles and image_ids list them
            "graph_unavailable_next": 0,        # next N Graph calls: HTTP 500 "temporarily unavailable"
            # CDN. The toolset README ("Script to get image details", "Script to download images") stores
            # thumbnail URLs in a CSV, downloads them later and resumes by running again; its sample
            # URLs carry an `oe` expiry days ahead (62A68E04 .. 62A7DBBC: about a day apart). So URLs
            # live for days here too. Set a few seconds to inject the fault of an expired URL.
            "thumbnail_lifetime_s": 3 * 86400.0,
            # Uploads.
            "upload_session_ttl_s": 172_800.0,
            "drop_upload_after_bytes": 0,       # an upload POST loses its connection after this many bytes...
            "drop_upload_next": 0,              # ...for the next N upload POSTs
            "drop_upload_key": "",              # ...to this session key only (empty: any): no other upload takes them
            "legacy_aws_access_key_id": "AKIAI2X3BJAT2W75HILA",
            # Stricter than the legacy upload notes ("Generating a key" only says what mapillary_tools
            # builds, {username}/{uuid4}/{filename}, not that S3 refuses another key): off by default.
            "legacy_key_layout_check": False,
            "legacy_accounts": {"sandbox_uploader": {"permission_hash": "sandbox-permission-hash",
                                                     "signature_hash": "sandbox-signature-hash"}},
        }

    def __init__(self, public_url: str = "") -> None:
        super().__init__(public_url)
        self.reset_state()

    def reset_state(self) -> None:
        self.upload_sessions: dict[str, UploadSession] = {}
        self.handles: dict[str, str] = {}               # file handle -> session key
        self.clusters: dict[str, dict[str, Any]] = {}   # file handle -> cluster record
        self.legacy_objects: dict[str, dict[str, Any]] = {}
        self.rate_windows: dict[str, tuple[float, int]] = {}

    # --- the world (built lazily: most sandbox users never ask Mapillary anything) ---
    @property
    def world(self) -> mw.World:
        o = self.options
        return mw.build_world(int(o["seed"]), float(o["world_scale"]),
                              (float(o["center_lon"]), float(o["center_lat"])), float(o["region_km"]),
                              int(o["long_sequence_images"]))

    def stored_upload(self, session_key: str) -> bytes:
        """The bytes an upload session holds (for in-process tests)."""
        with self.lock:
            session = self.upload_sessions.get(session_key)
            return bytes(session.data) if session else b""

    def status(self) -> dict[str, Any]:
        with self.lock:
            sessions = {k: {"offset": len(s.data), "md5": hashlib.md5(s.data).hexdigest(), "handle": s.handle,
                            "entity_type": s.entity_type} for k, s in self.upload_sessions.items()}
            return {"world": self.world.summary(), "upload_sessions": sessions, "clusters": dict(self.clusters),
                    "legacy_objects": dict(self.legacy_objects)}

    # --- guards: auth, rate limits, injected outages ---
    def _presented_token(self) -> tuple[str | None, bool]:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("oauth", "bearer") and value.strip():
            return value.strip(), True
        return request.args.get("access_token"), False

    def _identity(self, token: str | None) -> dict[str, str] | None:
        if not token:
            return None
        with self.lock:
            username = self.options["user_tokens"].get(token)
            if username:
                return {"kind": "user", "username": username, "id": _user_id(username)}
            if token in self.options["client_tokens"]:
                return {"kind": "client"}
        return None

    def _rate_limited(self, family: str) -> float | None:
        """Seconds until the window reopens when this request is over the family's limit, else None."""
        limit = int(self.options[f"{family}_rate_limit"])
        if limit <= 0:
            return None
        window, now = float(self.options["rate_limit_window_s"]), time.monotonic()
        with self.lock:
            start, count = self.rate_windows.get(family, (now, 0))
            if now - start >= window:
                start, count = now, 0
            self.rate_windows[family] = (start, count + 1)
        return max(0.001, start + window - now) if count + 1 > limit else None

    def _guard_read(self, family: str, *, user_only: bool = False) -> Response | None:
        """Graph and tiles: a valid token, then the app's rate limit, then any injected outage."""
        token, via_header = self._presented_token()
        identity = self._identity(token)
        if identity is None or (user_only and identity["kind"] != "user"):
            self.calls.add("auth_refused", family)
            message = ("Invalid OAuth 2.0 Access Token" if token
                       else "An access token is required to request this resource.")
            # Third-party tests saw the type turn into OAuthException when a bad header is sent.
            return graph_error(int(self.options["auth_error_http_status"]), message, AUTH_ERROR_CODE,
                               error_type="OAuthException" if via_header else GRAPH_ERROR_TYPE)
        g.identity = identity
        wait = self._rate_limited(family)
        if wait is not None:
            self.calls.add("rate_limited", family)
            return graph_error(int(self.options["rate_limit_http_status"]), "(#4) Application request limit reached",
                               APP_RATE_LIMIT_CODE, retry_after_s=wait, is_transient=True)
        if family == "graph":
            with self.lock:
                outage = int(self.options["graph_unavailable_next"]) > 0
                if outage:
                    self.options["graph_unavailable_next"] = int(self.options["graph_unavailable_next"]) - 1
            if outage:
                return graph_error(500, "Service temporarily unavailable", 2, is_transient=True)
        return None

    def _guard_upload(self) -> Response | None:
        token, _ = self._presented_token()
        identity = self._identity(token)
        if identity is None or identity["kind"] != "user":
            self.calls.add("auth_refused", "upload")
            return upload_error(401, "NotAuthorizedError", "Invalid user access token", retriable=False)
        g.identity = identity
        wait = self._rate_limited("upload")
        if wait is not None:
            self.calls.add("rate_limited", "upload")
            return upload_error(int(self.options["rate_limit_http_status"]), "RequestRateLimitedError",
                                "Request rate limit has been exceeded", retriable=False,
                                backoff_ms=int(wait * 1000))
        return None

    # --- Graph: nodes and fields ---
    def _requested_fields(self, allowed: frozenset[str], node_type: str) -> list[str] | Response:
        """Only `id` unless fields are listed; `a.b` picks sub-fields of a (as in detections.value)."""
        names = [f.strip() for f in request.args.get("fields", "").split(",") if f.strip()]
        for name in names:
            if name.split(".", 1)[0] not in allowed:
                return graph_error(400, f"(#100) Tried accessing nonexisting field ({name}) "
                                        f"on node type ({node_type})", 100)
        return names

    def _node(self, node_id: str) -> tuple[str, Any] | None:
        world = self.world
        if node_id in world.images:
            if node_id in self.options["deleted_image_ids"]:
                return None
            return "Image", world.images[node_id]
        if node_id in world.organizations:
            return "Organization", world.organizations[node_id]
        if node_id in world.creators:
            return "User", world.creators[node_id]
        return None

    def _serialize(self, node_type: str, node: Any, names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": node.id}
        for name in names:
            root, _, sub = name.partition(".")
            value = self._image_value(node, root) if node_type == "Image" else getattr(node, root, None)
            if value is None:
                continue  # fields an entity lacks are left out, as the API does
            if sub and isinstance(value, dict):
                picked = out.get(root) if isinstance(out.get(root), dict) else {}
                if sub in value:
                    picked[sub] = value[sub]
                value = picked
            out[root] = value
        return out

    def _image_value(self, image: mw.Image, name: str) -> Any:
        camera = image.camera
        if name in THUMBNAIL_WIDTHS:
            return self._cdn_url(image, name[len("thumb_"):-len("_url")])
        simple = {
            "id": image.id, "altitude": image.altitude, "atomic_scale": image.atomic_scale,
            "camera_parameters": list(camera.parameters), "camera_type": camera.camera_type,
            "captured_at": image.captured_at, "compass_angle": image.compass_angle,
            "computed_altitude": image.computed_altitude, "computed_compass_angle": image.computed_compass_angle,
            "computed_rotation": list(image.computed_rotation), "exif_orientation": 1,
            "height": camera.height, "width": camera.width, "is_pano": camera.is_pano, "make": camera.make,
            "model": camera.model, "merge_cc": image.merge_cc, "quality_score": image.quality_score,
            "sequence": image.sequence_id,
        }
        if name in simple:
            return simple[name]
        if name == "geometry":
            return {"type": "Point", "coordinates": [image.lon, image.lat]}
        if name == "computed_geometry":
            return {"type": "Point", "coordinates": [image.computed_lon, image.computed_lat]}
        if name == "creator":
            return {"id": image.creator.id, "username": image.creator.username}
        if name == "mesh":
            return {"id": image.mesh_id, "url": self._cdn_url(image, "mesh")}
        if name == "sfm_cluster":
            return {"id": image.sfm_cluster_id, "url": self._cdn_url(image, "sfm")}
        if name == "detections":
            return {"data": []}
        return None

    def _allowed_fields(self, node_type: str) -> frozenset[str]:
        return {"Image": IMAGE_FIELDS, "Organization": ORGANIZATION_FIELDS, "User": USER_FIELDS}[node_type]

    # --- Graph endpoints ---
    def _get_node(self, node_id: str) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        found = self._node(node_id)
        if found is None:
            self.calls.add("graph_missing", node_id)
            return graph_error(400, f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be "
                                    "loaded due to missing permissions, or does not support this operation",
                               NONEXISTENT_CODE, subcode=NONEXISTENT_SUBCODE)
        node_type, node = found
        names = self._requested_fields(self._allowed_fields(node_type), node_type)
        if isinstance(names, Response):
            return names
        self.calls.add("graph_image" if node_type == "Image" else "graph_node", node_id)
        return jsonify(self._serialize(node_type, node, names))

    def _get_batch(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        ids = [i.strip() for i in request.args.get("ids", "").split(",") if i.strip()]
        if not ids:
            return graph_error(400, "(#100) The parameter ids is required", 100)
        missing = [i for i in ids if self._node(i) is None]
        if missing:
            # One id that does not resolve fails the whole batch.
            self.calls.add("graph_batch_failed")
            return graph_error(404, f"(#803) Some of the aliases you requested do not exist: {','.join(missing)}",
                               MISSING_ALIASES_CODE)
        out = {}
        for node_id in ids:
            node_type, node = self._node(node_id)
            names = self._requested_fields(self._allowed_fields(node_type), node_type)
            if isinstance(names, Response):
                return names
            out[node_id] = self._serialize(node_type, node, names)
        self.calls.add("graph_batch")
        self.calls.add("graph_batch_ids", str(len(ids)))
        return jsonify(out)

    def _get_image_ids(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        sequence_id = request.args.get("sequence_id", "")
        if not sequence_id:
            return graph_error(400, "(#100) The parameter sequence_id is required", 100)
        sequence = self.world.sequences.get(sequence_id)
        if sequence is None:
            return graph_error(400, f"Unsupported get request. Object with ID '{sequence_id}' does not exist, cannot "
                                    "be loaded due to missing permissions, or does not support this operation",
                               NONEXISTENT_CODE, subcode=NONEXISTENT_SUBCODE)
        self.calls.add("image_ids", sequence_id)
        return jsonify({"data": [{"id": image_id} for image_id in sequence.image_ids]})

    def _search_images(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        args, world = request.args, self.world
        names = self._requested_fields(IMAGE_FIELDS, "Image")
        if isinstance(names, Response):
            return names
        try:
            limit = min(int(args.get("limit", SEARCH_LIMIT)), SEARCH_LIMIT)
            if "bbox" in args:
                bbox = tuple(float(v) for v in args["bbox"].split(","))
                if len(bbox) != 4:
                    raise ValueError("bbox needs minLon,minLat,maxLon,maxLat")
                candidates = world.images_in_bbox(bbox)
            elif "lat" in args and "lng" in args:
                radius = float(args.get("radius", SEARCH_MAX_RADIUS_M))
                if radius > SEARCH_MAX_RADIUS_M:
                    raise ValueError(f"radius must be at most {SEARCH_MAX_RADIUS_M} meters")
                lat, lng = float(args["lat"]), float(args["lng"])
                candidates = [i for i in world.images.values() if _metres(lng, lat, i.lon, i.lat) <= radius]
            elif "sequence_id" in args:
                wanted = set(args["sequence_id"].split(","))
                candidates = [world.images[i] for s in wanted if s in world.sequences
                              for i in world.sequences[s].image_ids]
            else:
                raise ValueError("one of bbox, lat/lng or sequence_id is required")
            if ("make" in args or "model" in args) and "bbox" not in args:
                raise ValueError("make and model can only be used together with bbox")
            candidates = [i for i in candidates if _search_match(i, args)]
        except ValueError as exc:
            return graph_error(400, f"(#100) Invalid parameter: {exc}", 100)
        candidates.sort(key=lambda i: i.captured_at, reverse=True)   # newest first, as observed
        self.calls.add("images_search")
        return jsonify({"data": [self._serialize("Image", i, names) for i in candidates[:limit]]})

    def _me(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        if g.identity["kind"] != "user":
            return graph_error(400, "An active access token must be used to query information about the current user.",
                               2500, error_type="OAuthException")
        names = self._requested_fields(USER_FIELDS, "User")
        if isinstance(names, Response):
            return names
        self.calls.add("me")
        me = {"id": g.identity["id"], "username": g.identity["username"]}
        return jsonify({"id": me["id"], **{n: me[n] for n in names if n in me}})

    def _finish_upload(self) -> Response:
        refused = self._guard_read("graph", user_only=True)
        if refused:
            return refused
        body = request.get_json(silent=True) or {}
        for name in ("file_handle", "file_type"):
            if not body.get(name):
                return graph_error(400, f"(#100) The parameter {name} is required", 100)
        handle, file_type = str(body["file_handle"]), str(body["file_type"])
        if file_type not in CLUSTER_FILE_TYPES:
            return graph_error(400, f"(#100) Param file_type must be one of {{{', '.join(CLUSTER_FILE_TYPES)}}}", 100)
        organization_id = body.get("organization_id")
        if organization_id is not None and str(organization_id) not in self.world.organizations:
            return graph_error(400, f"(#100) Param organization_id is not a valid organization: {organization_id}", 100)
        with self.lock:
            key = self.handles.get(handle)
            content = bytes(self.upload_sessions[key].data) if key else None
        if content is None:
            return graph_error(400, f"(#100) Param file_handle is not a valid file handle: {handle}", 100)
        problem, images = self._check_upload_content(file_type, content)
        if problem:
            return graph_error(400, f"(#100) {problem}", 100)
        with self.lock:
            record = self.clusters.get(handle)
            if record is None:
                record = {"cluster_id": str(int(_sign("cluster", handle)[:13], 16)), "file_type": file_type,
                          "organization_id": organization_id, "images": images, "session_key": key,
                          "uploader": g.identity["username"]}
                self.clusters[handle] = record
        self.calls.add("finish", handle)
        return jsonify({"cluster_id": record["cluster_id"]})

    def _check_upload_content(self, file_type: str, content: bytes) -> tuple[str | None, int]:
        """What processing would reject at once; returns (problem, number of images)."""
        if file_type == "zip":
            try:
                with zipfile.ZipFile(io.BytesIO(content)) as archive:
                    comment = json.loads(archive.comment or b"{}")
                    count = len(archive.namelist())
            except (zipfile.BadZipFile, ValueError):
                return "the uploaded file is not a zip with a JSON comment", 0
            if "sequence_md5sum" not in comment:
                return "the zip comment has no sequence_md5sum", 0
            return None, count
        if file_type == "mly_bundle_manifest":
            try:
                manifest = json.loads(content)
                handles = list(manifest["image_handles"])
                ok = manifest.get("version") == "1" and manifest.get("upload_type") == "images"
            except (ValueError, KeyError, TypeError):
                return "the manifest is not valid JSON with image_handles", 0
            if not ok or not handles:
                return "the manifest needs version 1, upload_type images and image_handles", 0
            with self.lock:
                unknown = [h for h in handles if h not in self.handles]
                not_jpeg = [h for h in handles if h in self.handles
                            and not self.upload_sessions[self.handles[h]].data.startswith(b"\xff\xd8")]
            if unknown:
                return f"unknown image handles in manifest: {','.join(unknown)}", 0
            if not_jpeg:
                return f"image handles that are not JPEG: {','.join(not_jpeg)}", 0
            return None, len(handles)
        if content[4:8] != b"ftyp":
            return "the uploaded file is not an MP4 video", 0
        return None, 0

    # --- tiles ---
    def _tile(self, tileset: str, z: int, x: int, y: int) -> Response:
        refused = self._guard_read("tiles")
        if refused:
            return refused
        if tileset not in TILESETS:
            return graph_error(404, f"Unknown tileset {tileset}", 100)
        if not (0 <= z <= mw.IMAGE_ZOOM and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
            return graph_error(404, f"Tile {z}/{x}/{y} is outside the tile pyramid (z0-14)", 100)
        body = _cached_tile(self.world, TILESETS[tileset], z, x, y)
        self.calls.add("tile", f"{z}/{x}/{y}")
        return Response(body, mimetype="application/x-protobuf")

    # --- CDN: signed, expiring URLs as fbcdn hands out ---
    def _cdn_url(self, image: mw.Image, kind: str) -> str:
        expires = int(time.time() + float(self.options["thumbnail_lifetime_s"]))
        opaque = base64.urlsafe_b64encode(f"{image.id}:{kind}".encode()).decode().rstrip("=")
        oe = f"{expires:X}"
        width, height = _thumbnail_size(image, kind)
        return (f"{self.public_url}/{self.name}/cdn/m1/v/t6/{opaque}?stp=s{width}x{height}&ccb=10-5"
                f"&oh=00_{_sign(opaque, oe)[:40]}&oe={oe}&_nc_sid=122ab1")

    def _cdn(self, opaque: str) -> Response:
        oe, oh = request.args.get("oe", ""), request.args.get("oh", "")
        if not hmac.compare_digest(oh, f"00_{_sign(opaque, oe)[:40]}"):
            self.calls.add("cdn_refused", "bad_hash")
            return Response("Bad URL hash", status=403, mimetype="text/plain")
        if int(oe, 16) < time.time():
            self.calls.add("cdn_refused", "expired")
            return Response("URL signature expired", status=403, mimetype="text/plain")
        image_id, kind = base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4)).decode().split(":")
        image = self.world.images.get(image_id)
        if image is None:
            return Response("Not Found", status=404, mimetype="text/plain")
        if kind in ("mesh", "sfm"):
            self.calls.add("cdn_blob", image_id)
            return Response(hashlib.sha256(f"{kind}:{image_id}".encode()).digest() * 8, mimetype="application/octet-stream")
        width, height = _thumbnail_size(image, kind)
        self.calls.add("thumbnail", image_id)
        # Small thumbnails are asked for again and again; large ones are quick enough to redraw.
        picture = _cached_jpeg(image, width, height) if width <= 1024 else mw.render_jpeg(image, width, height)
        return Response(picture, mimetype="image/jpeg")

    # --- offset-resumable uploads (rupload) ---
    def _session(self, key: str, create: bool) -> UploadSession | None:
        """The live session for key; an expired one is forgotten, as the service's sessions expire."""
        with self.lock:
            session = self.upload_sessions.get(key)
            if session and session.handle is None and \
                    time.time() - session.created > float(self.options["upload_session_ttl_s"]):
                session = None
            if session is None and create:
                session = self.upload_sessions[key] = UploadSession(key, time.time())
            return session

    def _upload_offset(self, key: str) -> Response:
        refused = self._guard_upload()
        if refused:
            return refused
        session = self._session(key, create=False)
        self.calls.add("upload_offset", key)
        with self.lock:
            return jsonify({"offset": len(session.data) if session else 0})

    def _upload(self, key: str) -> Response:
        refused = self._guard_upload()
        if refused:
            return refused
        headers = request.headers
        if headers.get("X-Entity-Name") != key:
            return upload_error(400, "InvalidRequestError", "X-Entity-Name must name the upload session", retriable=False)
        try:
            offset = int(headers.get("Offset", ""))
            declared = int(headers["X-Entity-Length"]) if "X-Entity-Length" in headers else None
        except ValueError:
            return upload_error(400, "InvalidRequestError", "Offset and X-Entity-Length must be integers", retriable=False)
        session = self._session(key, create=True)
        with self.lock:
            current = len(session.data)
            if offset != current:
                return upload_error(412, "OffsetInvalidError", f"Offset {offset} does not match the uploaded size {current}",
                                    retriable=True)
            if declared is not None and session.declared_length not in (None, declared):
                return upload_error(400, "InvalidRequestError",
                                    f"X-Entity-Length {declared} differs from the session's {session.declared_length}",
                                    retriable=False)
            session.declared_length = declared if declared is not None else session.declared_length
            session.entity_type = headers.get("X-Entity-Type", session.entity_type)
            targeted = int(self.options["drop_upload_next"]) > 0 and self.options["drop_upload_key"] in ("", key)
            drop_after = int(self.options["drop_upload_after_bytes"]) if targeted else 0
            if drop_after:
                self.options["drop_upload_next"] = int(self.options["drop_upload_next"]) - 1
        self.calls.add("upload", key)
        received = self._receive(session, offset, drop_after)
        if received is None:
            return upload_error(412, "OffsetInvalidError", "Another upload to this session moved the offset", retriable=True)
        with self.lock:
            total = len(session.data)
            if session.declared_length is not None and total != session.declared_length:
                if total > session.declared_length:
                    del session.data[session.declared_length:]
                    return upload_error(400, "InvalidRequestError", "More bytes than X-Entity-Length", retriable=False)
                return upload_error(400, "IncompleteUploadError",
                                    f"Received {total} of {session.declared_length} bytes", retriable=True)
            session.handle = _file_handle(key, hashlib.md5(session.data).hexdigest())
            self.handles[session.handle] = key
        self.calls.add("upload_complete", key)
        return jsonify({"h": session.handle})

    def _receive(self, session: UploadSession, offset: int, drop_after: int) -> int | None:
        """Append the body to the session as it arrives (so a cut connection keeps what came);
        with drop_after, cut the connection once that many bytes arrived."""
        stream, received, position = request.stream, 0, offset
        while True:
            want = 64 * 1024 if not drop_after else min(64 * 1024, drop_after - received)
            try:
                chunk = stream.read(want) if want > 0 else b""
            except Exception:  # the client went away mid-body: keep what arrived
                return received
            if chunk:
                with self.lock:
                    if len(session.data) != position:
                        return None
                    session.data += chunk
                position += len(chunk)
                received += len(chunk)
            if drop_after and received >= drop_after:
                self.calls.add("upload_dropped", session.key)
                drop_connection()
            if not chunk:
                return received

    # --- legacy S3 form upload ---
    def _legacy_upload(self, bucket: str) -> Response:
        if bucket not in LEGACY_BUCKETS:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
        mimetype, params = parse_options_header(request.headers.get("Content-Type", ""))
        if mimetype != "multipart/form-data" or "boundary" not in params:
            return s3_error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                            Condition="Bucket POST must be of the enclosure-type multipart/form-data")
        parts = _ordered_form_parts(request.get_data(), params["boundary"].encode())
        if parts is None:
            return s3_error(400, "MalformedPOSTRequest",
                            "The body of your POST request is not well-formed multipart/form-data.")
        names = [name for name, _, _ in parts]
        if names != list(LEGACY_FIELD_ORDER):
            # The first field that is missing or out of place, worded as S3 does.
            wrong = next((want for got, want in zip(names + [""] * 8, LEGACY_FIELD_ORDER) if got != want), "file")
            return s3_error(400, "InvalidArgument", f"Bucket POST must contain a field named '{wrong}'. "
                                                    "If it is specified, please check the order of the fields.",
                            ArgumentName=wrong, ArgumentValue="")
        form = {name: value for name, _, value in parts}
        filename = parts[-1][1]
        text = {k: form[k].decode("utf-8", "replace") for k in LEGACY_FIELD_ORDER[:-1]}
        if text["AWSAccessKeyId"] != self.options["legacy_aws_access_key_id"]:
            return s3_error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
                            AWSAccessKeyId=text["AWSAccessKeyId"])
        username = text["key"].split("/", 1)[0]
        account = self.options["legacy_accounts"].get(username)
        if account is None or text["policy"] != account["permission_hash"]:
            return s3_error(403, "AccessDenied",
                            f'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "{username}/"]')
        if text["signature"] != account["signature_hash"]:
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                          "signature you provided. Check your key and signing method.")
        for name, wanted in (("acl", "private"), ("Content-Type", "image/jpeg")):
            if text[name] != wanted:
                return s3_error(403, "AccessDenied",
                                f'Invalid according to Policy: Policy Condition failed: ["eq", "${name}", "{wanted}"]')
        match = LEGACY_KEY.match(text["key"])
        if self.options["legacy_key_layout_check"] and (match is None or match["filename"] != filename):
            # Stricter than S3: the key must be {username}/{uuid4}/{name of the file}, as the uploader builds it.
            return s3_error(400, "InvalidArgument", "key must be {username}/{uuid}/{filename} of the uploaded file",
                            ArgumentName="key", ArgumentValue=text["key"])
        content = form["file"]
        with self.lock:
            self.legacy_objects[text["key"]] = {"size": len(content), "md5": hashlib.md5(content).hexdigest(),
                                                "is_jpeg": content.startswith(b"\xff\xd8"),
                                                "done_marker": filename == "DONE" and not content}
        self.calls.add("legacy_upload", text["key"])
        return Response(status=204)

    # --- routes ---
    def register(self, bp: Blueprint) -> None:
        bp.add_url_rule("/graph", "graph_root", self._get_batch, methods=["GET"])
        bp.add_url_rule("/graph/", "graph_root_slash", self._get_batch, methods=["GET"])
        bp.add_url_rule("/graph/me", "graph_me", self._me, methods=["GET"])
        bp.add_url_rule("/graph/images", "graph_images", self._search_images, methods=["GET"])
        bp.add_url_rule("/graph/image_ids", "graph_image_ids", self._get_image_ids, methods=["GET"])
        bp.add_url_rule("/graph/finish_upload", "graph_finish_upload", self._finish_upload, methods=["POST"])
        bp.add_url_rule("/graph/<node_id>", "graph_node", self._get_node, methods=["GET"])
        bp.add_url_rule("/tiles/maps/vtp/<tileset>/2/<int:z>/<int:x>/<int:y>", "tile", self._tile, methods=["GET"])
        bp.add_url_rule("/cdn/m1/v/t6/<opaque>", "cdn", self._cdn, methods=["GET"])
        bp.add_url_rule(f"/rupload/{UPLOAD_PATH}/<key>", "upload_offset", self._upload_offset, methods=["GET"])
        bp.add_url_rule(f"/rupload/{UPLOAD_PATH}/<key>", "upload", self._upload, methods=["POST"])
        bp.add_url_rule("/s3/<bucket>", "legacy_upload", self._legacy_upload, methods=["POST"])


# --- helpers ---

def _user_id(username: str) -> str:
    return str(10 ** 14 + int(hashlib.sha256(username.encode()).hexdigest()[:12], 16) % (9 * 10 ** 14))


def _file_handle(key: str, md5: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(_sign("handle", key, md5)[:48])).decode()


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon2 - lon1) * mw.EARTH_M_PER_DEG * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, (lat2 - lat1) * mw.EARTH_M_PER_DEG)


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _search_match(image: mw.Image, args) -> bool:
    checks = {
        "organization_id": lambda v: image.organization_id in v.split(","),
        "creator_id": lambda v: image.creator.id in v.split(","),
        "creator_username": lambda v: image.creator.username in v.split(","),
        "sequence_id": lambda v: image.sequence_id in v.split(","),
        "is_pano": lambda v: image.is_pano == (v.lower() == "true"),
        "make": lambda v: image.camera.make.lower() == v.lower(),
        "model": lambda v: image.camera.model.lower() == v.lower(),
        "start_captured_at": lambda v: image.captured_at >= _epoch_ms(v),
        "end_captured_at": lambda v: image.captured_at <= _epoch_ms(v),
    }
    return all(check(args[name]) for name, check in checks.items() if name in args)


def _thumbnail_size(image: mw.Image, kind: str) -> tuple[int, int]:
    width, height = image.camera.width, image.camera.height
    if kind in ("original", "mesh", "sfm"):
        return width, height
    target = int(kind)
    return target, max(1, round(height * target / width))


@functools.lru_cache(maxsize=512)
def _cached_jpeg(image: mw.Image, width: int, height: int) -> bytes:
    return mw.render_jpeg(image, width, height)


def _ordered_form_parts(body: bytes, boundary: bytes) -> list[tuple[str, str | None, bytes]] | None:
    """The multipart parts in the order sent, as (name, filename or None, content)."""
    decoder = MultipartDecoder(boundary)
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[tuple[str, str | None, bytes]] = []
    try:
        while True:
            event = decoder.next_event()
            if isinstance(event, (Field, File)):
                parts.append((event.name, event.filename if isinstance(event, File) else None, b""))
            elif isinstance(event, Data) and parts:
                name, filename, content = parts[-1]
                parts[-1] = (name, filename, content + event.data)
            elif isinstance(event, Epilogue) or event is NEED_DATA:
                break
    except ValueError:
        return None
    return parts if isinstance(event, Epilogue) else None


STAND_IN = MapillaryStandIn
