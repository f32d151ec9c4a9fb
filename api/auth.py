"""Who may call: an API key in `Authorization: Bearer <key>`, or, for the job pages, the session
that the login form opens (api/sessions.py), named by an HttpOnly cookie. A session grants
reading only, so a page opened from another site cannot submit or cancel with it."""
from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import sessions
from api.errors import ApiError
from api.keys import ApiKey, find

bearer = HTTPBearer(auto_error=False, description="An API key: `python -m api.keys NAME submit read` makes one.")


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def caller(request: Request, credentials: HTTPAuthorizationCredentials | None, cookie_allowed: bool) -> ApiKey:
    keys = request.app.state.api_keys
    if credentials:
        key = find(keys, credentials.credentials)
        if key is None:
            raise unauthorized("unknown API key")
        return key
    session_id = request.cookies.get(sessions.COOKIE) if cookie_allowed else None
    if not session_id:
        raise unauthorized("an API key is needed: Authorization: Bearer <key>")
    key = sessions.find(request.app.state.queue.redis, keys, session_id)
    if key is None:
        raise unauthorized("the session has ended: sign in again")
    return key


def require(scope: str):
    """A dependency: the caller's key, refused (403) unless it has `scope`."""

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> ApiKey:
        key = caller(request, credentials, cookie_allowed=scope == "read")
        if scope not in key.scopes:
            raise ApiError(403, "Forbidden", f"the key {key.name!r} lacks the {scope!r} scope")
        return key

    return check
