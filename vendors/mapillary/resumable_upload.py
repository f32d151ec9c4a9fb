"""Uploads by the offset-resumable protocol (rupload): a session key derived from the content,
bytes sent from the offset the server holds, then finish_upload for a cluster."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from vendors.mapillary.connection import MapillaryConnection
from vendors.mapillary.errors import MapillaryInputError
from vendors.mapillary.upload_sources import Source, open_source

UPLOAD_PATH = "mapillary_public_uploads"

MIN_UPLOAD_SPEED = 50 * 1024            # bytes/s: the read timeout grows with what is left to send
CLUSTER_FILE_TYPES = ("zip", "mly_blackvue_video", "mly_camm_video", "mly_bundle_manifest")
ENTITY_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".zip": "application/zip",
                ".mp4": "video/mp4", ".json": "application/json"}

Progress = Callable[[int, int], None]          # (bytes the server holds, total bytes)


def content_md5(source: Source) -> str:
    with open_source(source) as (stream, _):
        digest = hashlib.md5()
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
        return digest.hexdigest()


def upload_session_key(source: Source, extension: str) -> str:
    """mapillary_tools' deterministic session key, `mly_tools_<md5><ext>`: the same content resumes the same session."""
    return f"mly_tools_{content_md5(source)}{extension if extension.startswith('.') else '.' + extension}"


class ResumableUploads(MapillaryConnection):
    """Uploads by the offset-resumable protocol, and finishing them as clusters."""

    def _upload_endpoint(self, session_key: str) -> str:
        return f"{self.upload_url}/{UPLOAD_PATH}/{session_key}"

    def fetch_upload_offset(self, session_key: str) -> int:
        """How many bytes of the session the server already holds."""
        response = self._call("GET", self._upload_endpoint(session_key), f"upload offset of {session_key}")
        return int(response.json()["offset"])

    def upload(self, session_key: str, source: Source, *, entity_type: str | None = None,
               progress: Progress | None = None) -> str:
        """Upload bytes under a session key and return the file handle ("h").

        Every try asks the server for its offset first and sends only the rest, so a try after a
        crash, a dropped connection, a 5xx or a 429 continues the session instead of sending again."""
        suffix = os.path.splitext(session_key)[1].lower()
        entity_type = entity_type or ENTITY_TYPES.get(suffix, "application/octet-stream")
        with open_source(source) as (stream, size):
            def once() -> str:
                offset = self.fetch_upload_offset(session_key)
                if offset > size:
                    raise MapillaryInputError(f"mapillary: session {session_key} holds {offset} bytes, more than "
                                              f"the {size} to upload: the key names other content")
                return self._upload_from(session_key, stream, size, offset, entity_type, progress)

            return self.retries.run(once)

    def _upload_from(self, session_key: str, stream: IO[bytes], size: int, offset: int, entity_type: str,
                     progress: Progress | None) -> str:
        stream.seek(offset)
        if progress:
            progress(offset, size)

        def body() -> Iterator[bytes]:
            sent = offset
            for chunk in iter(lambda: stream.read(self.upload_chunk_size), b""):
                yield chunk
                sent += len(chunk)
                if progress:
                    progress(sent, size)

        headers = {"Offset": str(offset), "X-Entity-Name": session_key, "X-Entity-Length": str(size),
                   "X-Entity-Type": entity_type}
        read_timeout = max(self.timeout, (size - offset) / MIN_UPLOAD_SPEED)
        response = self._call("POST", self._upload_endpoint(session_key), f"upload of {session_key}",
                              headers=headers, data=body(), timeout=read_timeout, retried=False)
        return str(response.json()["h"])

    def finish_upload(self, file_handle: str, file_type: str, organization_id: str | None = None) -> str:
        """Commit an uploaded file (zip, video or image-bundle manifest); returns the cluster id.
        The cluster id is not a sequence id: images appear in the API only after processing."""
        if file_type not in CLUSTER_FILE_TYPES:
            raise MapillaryInputError(f"mapillary: file_type must be one of {', '.join(CLUSTER_FILE_TYPES)}")
        payload: dict[str, Any] = {"file_handle": file_handle, "file_type": file_type}
        if organization_id is not None:
            payload["organization_id"] = str(organization_id)
        response = self._call("POST", f"{self.graph_url}/finish_upload", f"finish_upload of {file_handle}",
                              json=payload)
        return str(response.json()["cluster_id"])

    @staticmethod
    def image_manifest(image_handles: Sequence[str]) -> bytes:
        """The manifest that bundles uploaded images into one cluster (finished as mly_bundle_manifest)."""
        return json.dumps({"version": "1", "upload_type": "images", "image_handles": list(image_handles)},
                          separators=(",", ":")).encode()

    def upload_image_bundle(self, image_handles: Sequence[str], organization_id: str | None = None) -> str:
        """Upload the manifest for already-uploaded images and finish it; returns the cluster id.
        The manifest's key derives from its content, so a repeat resumes instead of duplicating."""
        manifest = self.image_manifest(image_handles)
        handle = self.upload(upload_session_key(manifest, ".json"), manifest, entity_type="application/json")
        return self.finish_upload(handle, "mly_bundle_manifest", organization_id)
