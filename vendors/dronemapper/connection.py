"""The DroneMapper client's connection: the base URL, the login and its cached token, and one call
sent and retried the fleet's way (vendors/http.py), with one new login when the token is rejected."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from vendors.dronemapper.errors import VENDOR, error_text, raise_for_status
from vendors.dronemapper.tokens import DEFAULT_TOKEN_LIFETIME_S, token_expiry, token_rejected
from vendors.errors import AuthError
from vendors.http import Retries, new_session, send
from vendors.tokens import MemoryTokenStore, TokenStore, renewal_ttl

TaskId = int | str


class DroneMapperConnection:
    """What every part of DroneMapperClient calls through: the base URL, the session, the token and the retries."""

    def __init__(self, base_url: str, username: str, password: str, token_store: TokenStore | None = None,
                 timeout: float = 60.0, retries: Retries = Retries()) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self._password = username, password
        self.tokens = token_store or MemoryTokenStore()
        self.timeout = timeout
        self.retries = retries
        self.session = new_session()
        self._token_key = f"{VENDOR}:{self.base_url}:{username}"
        self._partial_upload: bool | None = None

    # --- auth ---

    def login(self) -> str:
        """A fresh token, cached until shortly before the `exp` it carries."""
        return self.retries.run(self._login_once)

    def _login_once(self) -> str:
        response = send(self.session, "POST", self._url("/api/token-auth/"), vendor=VENDOR, timeout=self.timeout,
                        data={"username": self.username, "password": self._password})
        if response.status_code in (400, 401, 403):
            message, _field = error_text(response)
            raise AuthError(f"{VENDOR}: login refused: {message}", vendor=VENDOR,
                            status=response.status_code, vendor_message=message)
        raise_for_status(response)
        token = response.json()["token"]
        expiry = token_expiry(token)
        lifetime = expiry - time.time() if expiry else DEFAULT_TOKEN_LIFETIME_S
        self.tokens.put(self._token_key, token, renewal_ttl(max(lifetime, 0.0)))
        return token

    def _token(self) -> str:
        token = self.tokens.get(self._token_key)
        if token:
            expiry = token_expiry(token)
            if expiry is None or expiry > time.time():  # a shared store may outlive what it holds
                return token
        return self.login()

    # --- plumbing ---

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (), idempotent: bool = True,
              body: Callable[[], dict] | None = None, headers: dict | None = None,
              **kwargs: Any) -> requests.Response:
        """One API call, retried where it failed; one that creates something (`idempotent=False`) only
        when the vendor answered. `body()` gives the request's body per try (an upload rewinds its images)."""
        return self.retries.run(lambda: self._call_once(method, path, ok, body, headers, kwargs), idempotent=idempotent)

    def _call_once(self, method: str, path: str, ok: tuple[int, ...], body: Callable[[], dict] | None,
                   headers: dict | None, kwargs: dict[str, Any]) -> requests.Response:
        """One try with the token; on a rejected token, one new login and one more try."""
        for attempt in (0, 1):
            extra = body() if body else {}
            all_headers = {**(headers or {}), **extra.pop("headers", {}), "Authorization": f"JWT {self._token()}"}
            response = send(self.session, method, self._url(path), vendor=VENDOR, timeout=self.timeout,
                            headers=all_headers, **kwargs, **extra)
            if attempt == 0 and token_rejected(response):
                response.close()
                self.tokens.drop(self._token_key)
                continue
            break
        if response.status_code >= 400 and response.status_code not in ok:
            raise_for_status(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        return response.json() if response.content else None

    @staticmethod
    def _task_path(project_id: int, task_id: TaskId, tail: str = "") -> str:
        # the doc's task ids are ints, current WebODM's are UUIDs: take either as given
        return f"/api/projects/{int(project_id)}/tasks/{task_id}/{tail}"
