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

This module holds the stand-in's options, state and routing; its parts live beside it, one concern each:
mapillary_auth (tokens, rate limits, outages, /me), mapillary_graph (entities by id and in batches),
mapillary_search (/images), mapillary_tiles (coverage tiles), mapillary_cdn (signed thumbnail URLs),
mapillary_rupload (the resumable upload service), mapillary_finish (/finish_upload),
mapillary_legacy (the legacy S3 form upload), mapillary_api (error shapes, signing).
"""
from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint

from sandbox import mapillary_world as mw
from sandbox.mapillary_auth import AuthGuards
from sandbox.mapillary_cdn import CdnRoutes
from sandbox.mapillary_finish import FinishUploadRoutes
from sandbox.mapillary_graph import GraphRoutes
from sandbox.mapillary_legacy import LegacyUploadRoutes
from sandbox.mapillary_rupload import UPLOAD_PATH, ResumableUploadRoutes, UploadSession
from sandbox.mapillary_search import SearchRoutes, epoch_ms
from sandbox.mapillary_tiles import TileRoutes
from sandbox.vendor import VendorStandIn

SANDBOX_CLIENT_TOKEN = "MLY|4242424242424242|sandbox-client-token"
SANDBOX_USER_TOKEN = "MLY|4242424242424242|sandbox-user-token"


class MapillaryStandIn(AuthGuards, GraphRoutes, SearchRoutes, TileRoutes, CdnRoutes, ResumableUploadRoutes,
                       FinishUploadRoutes, LegacyUploadRoutes, VendorStandIn):
    name = "mapillary"

    def default_options(self) -> dict[str, Any]:
        return {
            # The world (changing any of these rebuilds it).
            "seed": mw.DEFAULT_SEED,
            "world_scale": 1.0,                 # multiplies the number of sequences
            "long_sequence_images": 0,          # > 0: one more organization, with one sequence of this many images
            # Sequences published since, made after the rest: [{"organization": slug, "sequences": n,
            # "captured_at": ISO 8601}, ...]; append an entry to publish more, the earlier ones unchanged.
            "added_sequences": [],
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
        added = tuple((a["organization"], int(a["sequences"]), epoch_ms(a["captured_at"]))
                      for a in o["added_sequences"])
        return mw.build_world(int(o["seed"]), float(o["world_scale"]),
                              (float(o["center_lon"]), float(o["center_lat"])), float(o["region_km"]),
                              int(o["long_sequence_images"]), added)

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

    # --- routes ---
    def register(self, bp: Blueprint) -> None:
        # Graph and tiles answer a path with or without a trailing slash, as the real hosts do: the
        # official Python SDK asks for `/{image_id}/?fields=` and `.../2/{z}/{x}/{y}/?access_token=`.
        either_slash = {"strict_slashes": False}
        bp.add_url_rule("/graph/", "graph_root", self._get_batch, methods=["GET"], **either_slash)
        bp.add_url_rule("/graph/me/", "graph_me", self._me, methods=["GET"], **either_slash)
        bp.add_url_rule("/graph/images/", "graph_images", self._search_images, methods=["GET"], **either_slash)
        bp.add_url_rule("/graph/image_ids/", "graph_image_ids", self._get_image_ids, methods=["GET"], **either_slash)
        bp.add_url_rule("/graph/finish_upload/", "graph_finish_upload", self._finish_upload, methods=["POST"],
                        **either_slash)
        bp.add_url_rule("/graph/<node_id>/", "graph_node", self._get_node, methods=["GET"], **either_slash)
        bp.add_url_rule("/tiles/maps/vtp/<tileset>/2/<int:z>/<int:x>/<int:y>/", "tile", self._tile, methods=["GET"],
                        **either_slash)
        bp.add_url_rule("/cdn/m1/v/t6/<opaque>", "cdn", self._cdn, methods=["GET"])
        bp.add_url_rule(f"/rupload/{UPLOAD_PATH}/<key>", "upload_offset", self._upload_offset, methods=["GET"])
        bp.add_url_rule(f"/rupload/{UPLOAD_PATH}/<key>", "upload", self._upload, methods=["POST"])
        bp.add_url_rule("/s3/<bucket>", "legacy_upload", self._legacy_upload, methods=["POST"])


STAND_IN = MapillaryStandIn
