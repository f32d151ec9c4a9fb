"""The Immersal client, configured from the fleet's settings: one per process and use."""
from __future__ import annotations

from config.redis_client import get_redis
from config.settings import Settings, get_settings
from runtime import NotConfigured
from services.token_cache import RedisTokenStore
from services.vendor_clients import call_retries, vendor_client
from tasks.immersal.records import POLL_CALL_TIMEOUT
from vendors.immersal import ImmersalClient


def build(s: Settings, timeout: float) -> ImmersalClient:
    secret = s.immersal_token or s.immersal_password
    store = RedisTokenStore(get_redis(), "immersal", secret.get_secret_value()) if secret else None
    return ImmersalClient(
        s.immersal_url, token=s.immersal_token.get_secret_value() if s.immersal_token else None,
        login=s.immersal_login, password=s.immersal_password.get_secret_value() if s.immersal_password else None,
        token_store=store, timeout=timeout, retries=call_retries(s))


@vendor_client("immersal")
def public_maps(s: Settings) -> ImmersalClient:
    """The account's client where one is configured; anonymous otherwise, for public maps."""
    return build(s, s.immersal_timeout)


@vendor_client("immersal")
def poller(s: Settings) -> ImmersalClient:
    """The poller's: a slow answer waits for the next round."""
    return build(s, POLL_CALL_TIMEOUT)


def client() -> ImmersalClient:
    """The configured account's client."""
    s = get_settings()
    if not (s.immersal_token or (s.immersal_login and s.immersal_password)):
        raise NotConfigured("immersal is not configured: set GEOQUEUE_IMMERSAL_TOKEN, or GEOQUEUE_IMMERSAL_LOGIN "
                            "and GEOQUEUE_IMMERSAL_PASSWORD", vendor="immersal")
    return public_maps()
