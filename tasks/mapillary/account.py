"""The Mapillary client, configured from the fleet's settings, its Graph and tile calls under fleet-wide limits."""
from __future__ import annotations

from config.redis_client import get_redis
from config.settings import Settings, get_settings
from runtime import NotConfigured
from services.rate_limit import Budget, FleetRateLimiter, Rate, RateLimitedAdapter
from services.vendor_clients import call_retries, vendor_client
from vendors.http import new_session
from vendors.mapillary.client import MapillaryClient
from vendors.mapillary.legacy_upload import LegacyUploadCredentials

RATE_WAIT_INLINE_S = 10.0              # longer waits for a fleet-wide slot retry the task instead
TILE_BUDGET_PERIOD_S = 86_400.0

RESUMABLE, LEGACY = "resumable", "legacy"


def limited_session(graph_url: str, tiles_url: str):
    """An HTTP session whose Graph and tile requests take a slot of the fleet-wide limits of the
    configured token: search (GET /images) and entity calls per minute, coverage tiles per UTC day.
    The limits are named after the account's alias, never after anything derived from the token."""
    s, limiter = get_settings(), FleetRateLimiter(get_redis())
    name = f"mapillary:{s.mapillary_account}"
    session = new_session()
    # requests picks the longest mounted prefix, so /images goes to search and the rest of Graph to entity.
    session.mount(f"{graph_url}/images", RateLimitedAdapter(
        limiter, f"{name}:search", Rate.per_minute(s.mapillary_search_per_minute), RATE_WAIT_INLINE_S))
    session.mount(f"{graph_url}/", RateLimitedAdapter(
        limiter, f"{name}:entity", Rate.per_minute(s.mapillary_entity_per_minute), RATE_WAIT_INLINE_S))
    session.mount(f"{tiles_url}/", RateLimitedAdapter(
        limiter, f"{name}:tiles", Budget(s.mapillary_tiles_per_day, TILE_BUDGET_PERIOD_S), RATE_WAIT_INLINE_S))
    return session


@vendor_client("mapillary", "mapillary_token")
def client(s: Settings) -> MapillaryClient:
    token = s.mapillary_token.get_secret_value()
    graph_url, tiles_url = s.mapillary_graph_url.rstrip("/"), s.mapillary_tiles_url.rstrip("/")
    return MapillaryClient(graph_url, tiles_url, s.mapillary_upload_url, token, timeout=s.mapillary_timeout,
                           retries=call_retries(s),
                           legacy_upload_url=s.mapillary_legacy_upload_url,
                           session=limited_session(graph_url, tiles_url))


def upload_protocol() -> str:
    """The configured upload protocol; a legacy one needs its credentials too."""
    protocol = get_settings().mapillary_upload_protocol
    if protocol not in (RESUMABLE, LEGACY):
        raise NotConfigured(f"GEOQUEUE_MAPILLARY_UPLOAD_PROTOCOL must be {RESUMABLE} or {LEGACY}, not {protocol!r}",
                            vendor="mapillary")
    if protocol == LEGACY:
        legacy_credentials()
    return protocol


# The settings of legacy uploads are refused as missing the way a client's are, naming the variables.
@vendor_client("mapillary", "mapillary_username", "mapillary_permission_hash", "mapillary_signature_hash")
def legacy_credentials(s: Settings) -> LegacyUploadCredentials:
    return LegacyUploadCredentials(s.mapillary_username, s.mapillary_permission_hash.get_secret_value(),
                                   s.mapillary_signature_hash.get_secret_value())
