"""Mapillary stand-in: who may call (client and user tokens), the app's rate limits, injected
Graph outages, and /me."""
from __future__ import annotations

import hashlib
import time

from flask import Response, g, jsonify, request

from sandbox.mapillary_api import APP_RATE_LIMIT_CODE, AUTH_ERROR_CODE, GRAPH_ERROR_TYPE, graph_error, upload_error
from sandbox.mapillary_graph import USER_FIELDS


class AuthGuards:
    """Token checks and limits every route runs first; GET /me."""

    def _presented_token(self) -> tuple[str | None, bool]:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("oauth", "bearer") and value.strip():
            return value.strip(), True
        return request.args.get("access_token"), False

    def _identity(self, token: str | None) -> dict[str, str] | None:
        if not token:
            return None
        with self.lock:
            username = self.options["user_tokens"].get(token)
            if username:
                return {"kind": "user", "username": username, "id": _user_id(username)}
            if token in self.options["client_tokens"]:
                return {"kind": "client"}
        return None

    def _rate_limited(self, family: str) -> float | None:
        """Seconds until the window reopens when this request is over the family's limit, else None."""
        limit = int(self.options[f"{family}_rate_limit"])
        if limit <= 0:
            return None
        window, now = float(self.options["rate_limit_window_s"]), time.monotonic()
        with self.lock:
            start, count = self.rate_windows.get(family, (now, 0))
            if now - start >= window:
                start, count = now, 0
            self.rate_windows[family] = (start, count + 1)
        return max(0.001, start + window - now) if count + 1 > limit else None

    def _guard_read(self, family: str, *, user_only: bool = False) -> Response | None:
        """Graph and tiles: a valid token, then the app's rate limit, then any injected outage."""
        token, via_header = self._presented_token()
        identity = self._identity(token)
        if identity is None or (user_only and identity["kind"] != "user"):
            self.calls.add("auth_refused", family)
            message = ("Invalid OAuth 2.0 Access Token" if token
                       else "An access token is required to request this resource.")
            # Third-party tests saw the type turn into OAuthException when a bad header is sent.
            return graph_error(int(self.options["auth_error_http_status"]), message, AUTH_ERROR_CODE,
                               error_type="OAuthException" if via_header else GRAPH_ERROR_TYPE)
        g.identity = identity
        wait = self._rate_limited(family)
        if wait is not None:
            self.calls.add("rate_limited", family)
            return graph_error(int(self.options["rate_limit_http_status"]), "(#4) Application request limit reached",
                               APP_RATE_LIMIT_CODE, retry_after_s=wait, is_transient=True)
        if family == "graph":
            with self.lock:
                outage = int(self.options["graph_unavailable_next"]) > 0
                if outage:
                    self.options["graph_unavailable_next"] = int(self.options["graph_unavailable_next"]) - 1
            if outage:
                return graph_error(500, "Service temporarily unavailable", 2, is_transient=True)
        return None

    def _guard_upload(self) -> Response | None:
        token, _ = self._presented_token()
        identity = self._identity(token)
        if identity is None or identity["kind"] != "user":
            self.calls.add("auth_refused", "upload")
            return upload_error(401, "NotAuthorizedError", "Invalid user access token", retriable=False)
        g.identity = identity
        wait = self._rate_limited("upload")
        if wait is not None:
            self.calls.add("rate_limited", "upload")
            return upload_error(int(self.options["rate_limit_http_status"]), "RequestRateLimitedError",
                                "Request rate limit has been exceeded", retriable=False,
                                backoff_ms=int(wait * 1000))
        return None

    def _me(self) -> Response:
        refused = self._guard_read("graph")
        if refused:
            return refused
        if g.identity["kind"] != "user":
            return graph_error(400, "An active access token must be used to query information about the current user.",
                               2500, error_type="OAuthException")
        names = self._requested_fields(USER_FIELDS, "User")
        if isinstance(names, Response):
            return names
        self.calls.add("me")
        me = {"id": g.identity["id"], "username": g.identity["username"]}
        return jsonify({"id": me["id"], **{n: me[n] for n in names if n in me}})


def _user_id(username: str) -> str:
    return str(10 ** 14 + int(hashlib.sha256(username.encode()).hexdigest()[:12], 16) % (9 * 10 ** 14))
