"""The DroneMapper client, configured from the fleet's settings."""
from __future__ import annotations

from tasks.dronemapper.records import VENDOR
from vendors.dronemapper import DroneMapperClient
from vendors.errors import VendorError
from workers.redis_client import get_redis
from workers.settings import get_settings
from workers.token_cache import RedisTokenStore


# --- the vendor, configured from settings ---
def client(timeout: float | None = None) -> DroneMapperClient:
    s = get_settings()
    if not (s.dronemapper_username and s.dronemapper_password):
        raise VendorError("DroneMapper credentials are not configured (GEOQUEUE_DRONEMAPPER_USERNAME/_PASSWORD)",
                          vendor=VENDOR)
    secret = s.dronemapper_password.get_secret_value()
    return DroneMapperClient(s.dronemapper_url, s.dronemapper_username, secret,
                             token_store=RedisTokenStore(get_redis(), VENDOR, secret),
                             timeout=timeout or s.dronemapper_timeout)
