"""DroneMapper's JWTs: when one expires, and when the vendor rejected one (so a fresh login may cure it)."""
from __future__ import annotations

import base64
import json

import requests

from vendors.dronemapper.errors import error_text

TOKEN_EXPIRED = "Signature has expired."
# JWT-level rejections: the token, not the user, is at fault, so a fresh login may cure them.
TOKEN_REJECTED = (TOKEN_EXPIRED, "Error decoding signature.")
DEFAULT_TOKEN_LIFETIME_S = 6 * 3600.0  # WebODM's, for a token that carries no exp


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it (only the vendor can)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def token_rejected(response: requests.Response) -> bool:
    return response.status_code in (401, 403) and error_text(response)[0] in TOKEN_REJECTED
