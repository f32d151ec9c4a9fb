"""Mapillary stand-in: the offset-resumable upload service (rupload)."""
from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field

from flask import Response, jsonify, request

from sandbox.faults import drop_connection
from sandbox.mapillary_api import _sign, upload_error

UPLOAD_PATH = "mapillary_public_uploads"


@dataclass
class UploadSession:
    key: str
    created: float
    data: bytearray = field(default_factory=bytearray)
    declared_length: int | None = None
    entity_type: str | None = None
    handle: str | None = None


class ResumableUploadRoutes:
    """GET (offset) and POST (append from an offset) on /mapillary_public_uploads/{key}."""

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
            return upload_error(400, "InvalidRequestError", "X-Entity-Name must name the upload session",
                                retriable=False)
        try:
            offset = int(headers.get("Offset", ""))
            declared = int(headers["X-Entity-Length"]) if "X-Entity-Length" in headers else None
        except ValueError:
            return upload_error(400, "InvalidRequestError", "Offset and X-Entity-Length must be integers",
                                retriable=False)
        session = self._session(key, create=True)
        with self.lock:
            current = len(session.data)
            if offset != current:
                return upload_error(412, "OffsetInvalidError",
                                    f"Offset {offset} does not match the uploaded size {current}",
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
            return upload_error(412, "OffsetInvalidError", "Another upload to this session moved the offset",
                                retriable=True)
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


def _file_handle(key: str, md5: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(_sign("handle", key, md5)[:48])).decode()
