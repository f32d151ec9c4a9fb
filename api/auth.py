"""Who may call: an API key in `Authorization: Bearer <key>`, or, for the job pages, in the
HttpOnly cookie that the login form sets. A cookie grants reading only, so a page opened from
another site cannot submit or cancel with it."""
from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.keys import ApiKey, find

COOKIE = "geoqueue_key"
bearer = HTTPBearer(auto_error=False, description="An API key: `python -m api.keys NAME submit read` makes one.")


def caller(request: Request, credentials: HTTPAuthorizationCredentials | None, cookie_allowed: bool) -> ApiKey:
    presented = credentials.credentials if credentials else (request.cookies.get(COOKIE) if cookie_allowed else None)
    if not presented:
        raise ApiError(401, "Unauthorized", "an API key is needed: Authorization: Bearer <key>",
                       headers={"WWW-Authenticate": "Bearer"})
    key = find(request.app.state.api_keys, presented)
    if key is None:
        raise ApiError(401, "Unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return key


def require(scope: str):
    """A dependency: the caller's key, refused (403) unless it has `scope`."""

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> ApiKey:
        key = caller(request, credentials, cookie_allowed=scope == "read")
        if scope not in key.scopes:
            raise ApiError(403, "Forbidden", f"the key {key.name!r} lacks the {scope!r} scope")
        return key

    return check
