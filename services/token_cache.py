"""Fleet-wide vendor token cache in Redis, encrypted with a key derived from the vendor secret.

Every worker shares one token per credential (fewer logins, no thundering herd), yet Redis
never holds a usable token: reading one needs the credential the workers already have.
"""
from __future__ import annotations

import base64

import redis
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class RedisTokenStore:
    def __init__(self, client: redis.Redis, vendor: str, secret: str) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=b"geoqueue-token-cache", info=vendor.encode()).derive(
            secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        # Key names carry nothing derived from the secret: the client's own key (vendor, URL, user)
        # says which token it is. A token sealed with another secret does not open: it is fetched anew.
        self._prefix = f"gq:token:{vendor}:"
        self._redis = client

    def get(self, key: str) -> str | None:
        sealed = self._redis.get(self._prefix + key)
        if not sealed:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None

    def put(self, key: str, token: str, ttl_seconds: float) -> None:
        sealed = self._fernet.encrypt(token.encode()).decode()
        self._redis.set(self._prefix + key, sealed, px=max(1000, int(ttl_seconds * 1000)))

    def drop(self, key: str) -> None:
        self._redis.delete(self._prefix + key)
