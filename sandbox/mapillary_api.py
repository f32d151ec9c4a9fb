"""Mapillary stand-in: the error shapes of Graph and the upload service, and the signing key
behind CDN URLs, file handles and cluster ids."""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from typing import Any

from flask import Response, jsonify

GRAPH_ERROR_TYPE = "MLYApiException"
AUTH_ERROR_CODE = 190
APP_RATE_LIMIT_CODE = 4
NONEXISTENT_CODE, NONEXISTENT_SUBCODE = 100, 33
MISSING_ALIASES_CODE = 803
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


def _sign(*parts: str) -> str:
    return hmac.new(SIGNING_KEY, ":".join(parts).encode(), hashlib.sha256).hexdigest()
