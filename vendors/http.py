"""Shared HTTP plumbing: sessions with timeouts, transport failures as TransientError, Retry-After."""
from __future__ import annotations

import email.utils
import time
from typing import Any

import requests

from vendors.errors import RateLimited, TransientError

USER_AGENT = "geoqueue/0.1"


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds, from either of its two forms (seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def send(session: requests.Session, method: str, url: str, *, vendor: str, timeout: float,
         check_status: bool = True, **kwargs: Any) -> requests.Response:
    """One HTTP request. Transport failures raise TransientError; so do 5xx and 429 unless
    check_status is False (for vendors whose error body must be read first)."""
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout as exc:
        raise TransientError(f"{vendor}: no answer within {timeout:g}s", vendor=vendor) from exc
    except requests.ConnectionError as exc:
        raise TransientError(f"{vendor}: connection failed ({type(exc).__name__})", vendor=vendor) from exc
    if check_status:
        raise_for_transient(response, vendor)
    return response


def raise_for_transient(response: requests.Response, vendor: str) -> None:
    """429 becomes RateLimited, 5xx TransientError; anything else is left to the caller."""
    if response.status_code == 429:
        raise RateLimited(f"{vendor}: rate limited (HTTP 429)", vendor=vendor, status=429,
                          retry_after=retry_after_seconds(response), vendor_message=response.text[:500])
    if response.status_code >= 500:
        raise TransientError(f"{vendor}: server error (HTTP {response.status_code})", vendor=vendor,
                             status=response.status_code, vendor_message=response.text[:500])
