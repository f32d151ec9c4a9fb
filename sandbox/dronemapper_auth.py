"""DroneMapper stand-in: token-auth and the JWTs djangorestframework-jwt issues."""
from __future__ import annotations

import time

import jwt
from flask import Response, jsonify, request

from sandbox.dronemapper_api import ApiError, _request_data, invalid

EXPIRED = "Signature has expired."


# --- JWT (HS256), as djangorestframework-jwt issues it ---

def jwt_encode(payload: dict, secret: bytes) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def jwt_decode(token: str, secret: bytes, now: float) -> dict:
    """The payload, or ApiError with djangorestframework-jwt's message. `exp` is checked against
    the vendor's clock (`now`), which tests move ahead, not ours."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
    except jwt.InvalidTokenError:
        raise ApiError(403, {"detail": "Error decoding signature."}) from None
    if now >= float(claims.get("exp", 0)):
        raise ApiError(403, {"detail": EXPIRED})
    return claims


class AuthRoutes:
    """POST /api/token-auth/, and who each request comes from."""

    def _token_auth(self) -> Response:
        data = _request_data()
        missing = {k: ["This field is required."] for k in ("username", "password") if not data.get(k)}
        if missing:
            raise invalid(missing)
        username = str(data["username"])
        if self.options["users"].get(username) != data["password"]:
            raise invalid({"non_field_errors": ["Unable to log in with provided credentials."]})
        exp = int(self._vendor_time() + float(self.options["token_lifetime_s"]))
        user_id = sorted(self.options["users"]).index(username) + 1
        token = jwt_encode({"user_id": user_id, "username": username, "exp": exp, "email": ""}, self.secret)
        self.calls.add("token", username)
        return jsonify({"token": token})

    def _authenticate(self, auth: str) -> str | None:
        """The username; None for an anonymous caller where the view allows one (it then sees 404s)."""
        header = request.headers.get("Authorization", "").split()
        token = None
        if header and header[0].lower() == "jwt":
            if len(header) != 2:
                self.calls.add("auth_rejected", "invalid")
                problem = ("No credentials provided." if len(header) == 1
                           else "Credentials string should not contain spaces.")
                raise ApiError(403, {"detail": f"Invalid Authorization header. {problem}"})
            token = header[1]
        elif request.args.get("jwt"):
            token = request.args["jwt"]
        if token is None:
            if auth == "optional":
                return None
            self.calls.add("auth_rejected", "missing")
            status = int(self.options["unauthenticated_status"])
            # DRF sends WWW-Authenticate with a 401 (JSONWebTokenAuthentication's header), none with a 403.
            raise ApiError(status, {"detail": "Authentication credentials were not provided."},
                           headers={"WWW-Authenticate": 'JWT realm="api"'} if status == 401 else None)
        try:
            claims = jwt_decode(token, self.secret, self._vendor_time())
        except ApiError as exc:
            self.calls.add("auth_rejected", "expired" if exc.body["detail"] == EXPIRED else "invalid")
            raise
        if claims.get("username") not in self.options["users"]:
            self.calls.add("auth_rejected", "invalid")
            raise ApiError(403, {"detail": "Invalid signature."})
        return claims["username"]

    def _vendor_time(self) -> float:
        return time.time() + float(self.options["clock_offset_s"])
