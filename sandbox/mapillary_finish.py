"""Mapillary stand-in: POST /finish_upload, which turns an uploaded file into a cluster."""
from __future__ import annotations

import io
import json
import zipfile

from flask import Response, g, jsonify, request

from sandbox.mapillary_api import _sign, graph_error

CLUSTER_FILE_TYPES = ("zip", "mly_blackvue_video", "mly_camm_video", "mly_bundle_manifest")


class FinishUploadRoutes:
    """POST /finish_upload, and what processing would refuse at once."""

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
