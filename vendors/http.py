"""Shared HTTP plumbing: sessions, transport failures as TransientError, Retry-After, and the
retry rule every vendor call follows.

A call retries its own transient failures (5xx, 429, timeouts, dropped connections) where it
failed, with exponential backoff and full jitter, bounded in tries and in time, so that one flaky
request does not cost a whole task. A call that creates or pays for something is retried only
when the vendor answered (a 429 or 5xx took no effect); cut off without an answer, it raises, and
its caller's exactly-once record decides whether it took effect.
"""
from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from geoqueue.backoff import backoff
from vendors.errors import RateLimited, TransientError

USER_AGENT = "geoqueue/0.1"
T = TypeVar("T")


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


def may_retry(error: TransientError, idempotent: bool) -> bool:
    """A call that may have taken effect is not repeated blindly.

    >>> may_retry(TransientError("500", status=500), idempotent=False)
    True
    >>> may_retry(TransientError("read timed out"), idempotent=False)
    False
    >>> may_retry(TransientError("read timed out"), idempotent=True)
    True
    >>> may_retry(TransientError("504 from the gateway", status=504), idempotent=False)
    False
    """
    return idempotent or error.answered


@dataclass(frozen=True)
class Retries:
    """How many tries one call gets, and for how long in all (both are settings of the fleet)."""

    attempts: int = 6
    total_seconds: float = 120.0
    base_seconds: float = 0.5
    cap_seconds: float = 20.0

    def run(self, call: Callable[[], T], *, idempotent: bool = True, sleep: Callable[[float], None] = time.sleep) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return call()
            except TransientError as error:
                delay = backoff(attempt, self.base_seconds, self.cap_seconds, error.retry_after, random.uniform)
                attempt += 1
                spent = time.monotonic() - started
                if (not may_retry(error, idempotent) or attempt >= self.attempts
                        or spent + delay > self.total_seconds):
                    raise
                sleep(delay)


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
