"""The job pages' sign-in: the cookie holds an opaque session id, never the key.

A session lives in Redis (so every API process knows it) under the SHA-256 of its id, so that
reading Redis gives no usable session. It names the key it was opened with by that key's hash (a
key taken out of GEOQUEUE_API_KEYS ends its sessions), grants reading only, lasts
GEOQUEUE_API_SESSION_TTL seconds, and logout deletes it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import secrets

import redis

from api.keys import ApiKey
from config.settings import Settings

COOKIE = "geoqueue_session"
KEY_COOKIE = "geoqueue_key"  # where earlier versions kept the key itself: cleared at sign-in and logout
PREFIX = "gq:ui-session:"


def slot(session_id: str) -> str:
    return PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def start(client: redis.Redis, key: ApiKey, ttl: int) -> str:
    session_id = secrets.token_urlsafe(32)
    client.set(slot(session_id), key.digest, ex=ttl)
    return session_id


def find(client: redis.Redis, keys: list[ApiKey], session_id: str) -> ApiKey | None:
    """The session's key, with the read scope only; None for an unknown, ended or expired session."""
    digest = client.get(slot(session_id))
    found = next((key for key in keys if digest and hmac.compare_digest(key.digest, digest)), None)
    if found is None or "read" not in found.scopes:
        return None
    return dataclasses.replace(found, scopes=frozenset({"read"}))


def end(client: redis.Redis, session_id: str) -> None:
    client.delete(slot(session_id))


def cookies_secure(settings: Settings) -> bool:
    """GEOQUEUE_API_COOKIE_SECURE, else on unless the API listens on loopback only: beyond it a
    browser reaches the pages through a TLS proxy, while the API itself sees plain HTTP."""
    if settings.api_cookie_secure is not None:
        return settings.api_cookie_secure
    try:
        return not ipaddress.ip_address(settings.api_address).is_loopback
    except ValueError:
        return settings.api_address != "localhost"
