"""The Immersal client, configured from the fleet's settings."""
from __future__ import annotations

from vendors.immersal import ImmersalClient
from workers.jobtask import JobError
from workers.redis_client import get_redis
from workers.settings import get_settings
from workers.token_cache import RedisTokenStore


# --- the vendor, configured from settings ---
def client(timeout: float | None = None, account: bool = True) -> ImmersalClient:
    """The configured account; `account=False` allows anonymous calls (public maps only)."""
    s = get_settings()
    secret = s.immersal_token or s.immersal_password
    if secret is None and account:
        raise JobError("Immersal credentials are not configured "
                       "(GEOQUEUE_IMMERSAL_TOKEN, or GEOQUEUE_IMMERSAL_LOGIN and GEOQUEUE_IMMERSAL_PASSWORD)")
    store = RedisTokenStore(get_redis(), "immersal", secret.get_secret_value()) if secret else None
    return ImmersalClient(
        s.immersal_url, token=s.immersal_token.get_secret_value() if s.immersal_token else None,
        login=s.immersal_login, password=s.immersal_password.get_secret_value() if s.immersal_password else None,
        token_store=store, timeout=timeout or s.immersal_timeout)
