"""Mapillary's error answers as typed errors: the Graph API, tiles and the upload service in
`error_from_response`, the legacy S3 form POST in `legacy_error_from_response`."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from typing import Any

import requests

from vendors.errors import AuthError, InputError, NotFound, RateLimited, TransientError, VendorError
from vendors.http import retry_after_seconds

VENDOR = "mapillary"

AUTH_ERROR_CODE = 190
USER_TOKEN_REQUIRED_CODE = 2500                  # Graph convention: an app token where a user token is needed
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})   # app, user, page and "calls within one hour" limits
MISSING_ALIASES_CODE = 803
NONEXISTENT_CODE, NONEXISTENT_SUBCODE = 100, 33


class MapillaryError(VendorError):
    """A Mapillary call that failed, keeping the vendor's error envelope (message, type, code, fbtrace_id)."""

    def __init__(self, message: str, *, code: int | None = None, error_type: str | None = None,
                 error_subcode: int | None = None, fbtrace_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("vendor", VENDOR)
        super().__init__(message, **kwargs)
        self.code = code
        self.type = error_type
        self.error_subcode = error_subcode
        self.fbtrace_id = fbtrace_id

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for key in ("code", "type", "error_subcode", "fbtrace_id"):
            if getattr(self, key, None) is not None:
                data[f"vendor_{key}" if key == "type" else key] = getattr(self, key)
        return data


class MapillaryAuthError(MapillaryError, AuthError):
    """Code 190 (whatever the HTTP status, even 500), 401/403, or the upload service's NotAuthorizedError."""


class MapillaryInputError(MapillaryError, InputError):
    """The request was refused as sent; repeating it will not help."""


class MapillaryNotFound(MapillaryError, NotFound):
    """An id does not resolve. `missing_ids` names them when the vendor said which."""

    missing_ids: Sequence[str] = ()


class MapillaryTransientError(MapillaryError, TransientError):
    """5xx without code 190, an offset conflict (412) or another error the vendor marks retriable."""


class MapillaryRateLimited(MapillaryError, RateLimited):
    """HTTP 429, Graph codes 4/17/32/613, or RequestRateLimitedError.
    `retry_after` comes from the body's `backoff` (milliseconds) or else the Retry-After header."""


class ExpiredUrl(MapillaryError):
    """A signed CDN URL was refused (expired or tampered): fetch the image's metadata again for a fresh URL."""


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: requests.Response, body: dict[str, Any]) -> float | None:
    backoff = body.get("backoff")
    if isinstance(backoff, (int, float)) and backoff >= 0:
        return backoff / 1000.0
    return retry_after_seconds(response)


def _missing_ids(message: str) -> list[str]:
    batch = re.search(r"do not exist:\s*([\w,\s]+)", message)
    if batch:
        return [i.strip() for i in batch.group(1).split(",") if i.strip()]
    single = re.search(r"Object with ID '([^']+)'", message)
    return [single.group(1)] if single else []


def error_from_response(response: requests.Response, what: str) -> MapillaryError:
    """The typed error for a failed Graph, tiles or upload-service response."""
    status, body = response.status_code, _body(response)
    envelope = body.get("error") if isinstance(body.get("error"), dict) else {}
    debug = body.get("debug_info") if isinstance(body.get("debug_info"), dict) else {}
    code, subcode = envelope.get("code"), envelope.get("error_subcode")
    vendor_message = envelope.get("message") or debug.get("message") or response.text[:500]
    details = {"status": status, "vendor_message": vendor_message, "code": code, "error_subcode": subcode,
               "error_type": envelope.get("type") or debug.get("type"), "fbtrace_id": envelope.get("fbtrace_id")}
    coded = f", code {code}" if code is not None else ""
    message = f"mapillary: {what} failed (HTTP {status}{coded}): {vendor_message}"

    # Code 190 first: the vendor sometimes sends it with HTTP 500, and it must not be retried.
    if code in (AUTH_ERROR_CODE, USER_TOKEN_REQUIRED_CODE) or debug.get("type") == "NotAuthorizedError" \
            or status in (401, 403):
        return MapillaryAuthError(message, **details)
    if status == 429 or code in RATE_LIMIT_CODES or debug.get("type") == "RequestRateLimitedError":
        return MapillaryRateLimited(message, retry_after=_retry_after(response, body), **details)
    if code == MISSING_ALIASES_CODE or (code == NONEXISTENT_CODE and subcode == NONEXISTENT_SUBCODE) or status == 404:
        error = MapillaryNotFound(message, **details)
        error.missing_ids = _missing_ids(vendor_message)
        return error
    if status >= 500 or debug.get("retriable") is True or envelope.get("is_transient") is True:
        return MapillaryTransientError(message, retry_after=retry_after_seconds(response), **details)
    return MapillaryInputError(message, **details)


def legacy_error_from_response(response: requests.Response) -> MapillaryError:
    """The typed error for an S3 XML error answer to the legacy form upload."""
    try:
        root = ElementTree.fromstring(response.content)
        code, text = root.findtext("Code") or "", root.findtext("Message") or ""
    except ElementTree.ParseError:
        code, text = "", response.text[:500]
    status = response.status_code
    message = f"mapillary: legacy upload failed (HTTP {status} {code}): {text}"
    details = {"status": status, "vendor_message": text, "error_type": code or None}
    if status in (401, 403):
        return MapillaryAuthError(message, **details)
    if status == 503 and code == "SlowDown":
        return MapillaryRateLimited(message, retry_after=retry_after_seconds(response), **details)
    if status >= 500 or status == 429:
        return MapillaryTransientError(message, retry_after=retry_after_seconds(response), **details)
    return MapillaryInputError(message, **details)

