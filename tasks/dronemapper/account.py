"""The DroneMapper clients of a worker process, configured from the fleet's settings.

The poller has its own: the client's timeout holds for every call it makes, and a poll cycle
waits for no slow answer (the next cycle asks again), while an upload or a download may take
minutes. Both share the token through Redis, so the second client costs no extra login.
"""
from __future__ import annotations

from config.redis_client import get_redis
from config.settings import Settings, get_settings
from services.token_cache import RedisTokenStore
from services.vendor_clients import call_retries, vendor_client
from tasks.dronemapper.records import VENDOR
from vendors.dronemapper.client import DroneMapperClient

POLL_CALL_TIMEOUT = 10.0


class RequestCounter:
    """A requests response hook counting the HTTP requests a client makes (a poll cycle reports its cost)."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, response, *_args, **_kwargs) -> None:
        self.made += 1


POLL_REQUESTS = RequestCounter()


def _client(s: Settings, timeout: float) -> DroneMapperClient:
    secret = s.dronemapper_password.get_secret_value()
    return DroneMapperClient(s.dronemapper_url, s.dronemapper_username, secret,
                             token_store=RedisTokenStore(get_redis(), VENDOR, secret), timeout=timeout,
                             retries=call_retries(s))


@vendor_client(VENDOR, "dronemapper_username", "dronemapper_password")
def client(s: Settings) -> DroneMapperClient:
    return _client(s, s.dronemapper_timeout)


def partial_upload_supported() -> bool:
    """Whether the server has WebODM's partial upload, asked for each survey (one GET): a client
    keeps its first answer for its life, the cached one for the life of the process, and the
    server may gain or lose those routes meanwhile (an upgrade)."""
    client()  # NotConfigured, naming the settings, before anything is built without them
    probe = _client(get_settings(), get_settings().dronemapper_timeout)
    try:
        return probe.supports_partial_upload()
    finally:
        probe.session.close()


@vendor_client(VENDOR, "dronemapper_username", "dronemapper_password")
def poll_client(s: Settings) -> DroneMapperClient:
    vendor = _client(s, POLL_CALL_TIMEOUT)
    vendor.session.hooks["response"].append(POLL_REQUESTS)
    return vendor
