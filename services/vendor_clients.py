"""One client per vendor and thread, built from the settings on first use and kept, so that
connections and tokens are reused (a new HTTP session per uploaded image costs a TLS handshake).
Per thread: a threads pool runs a hundred calls at once, each with a connection of its own.

    @vendor_client("immersity", "immersity_client_id", "immersity_client_secret")
    def immersity(settings) -> ImmersityClient: ...

A vendor whose settings are missing fails the job with NotConfigured naming the variables.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

from config.settings import Settings, get_settings
from runtime.errors import NotConfigured
from vendors.http import Retries

C = TypeVar("C")


def vendor_client(vendor: str, *required: str) -> Callable[[Callable[[Settings], C]], Callable[[], C]]:
    def wrap(build: Callable[[Settings], C]) -> Callable[[], C]:
        built = threading.local()

        @functools.wraps(build)
        def get() -> C:
            settings = get_settings()
            missing = [name for name in required if not getattr(settings, name)]
            if missing:
                names = ", ".join(f"GEOQUEUE_{name.upper()}" for name in missing)
                raise NotConfigured(f"{vendor} is not configured: set {names}", vendor=vendor)
            if not hasattr(built, "client"):
                built.client = build(settings)
            return built.client

        return get

    return wrap


def call_retries(settings: Settings) -> Retries:
    """How each vendor call retries its own transient failures (GEOQUEUE_CALL_RETRIES, _SECONDS)."""
    return Retries(attempts=settings.call_retries, total_seconds=settings.call_retry_seconds)
