"""DroneMapper's error answers as vendors.errors types, read from DRF's error shapes."""
from __future__ import annotations

import re

import requests

from vendors.errors import AuthError, Conflict, InputError, NotFound, VendorError

VENDOR = "dronemapper"


def error_text(response: requests.Response) -> tuple[str, str | None]:
    """The server's message and the field it names, from DRF's shapes: {"detail": m},
    {"field": [m, ...]}, {"non_field_errors": [m]} or [m, ...]; else the text without markup."""
    try:
        body = response.json()
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", response.text or "")
        return " ".join(text.split())[:300] or response.reason or "", None
    if isinstance(body, dict):
        if "detail" in body:
            return str(body["detail"]), None
        for key, value in body.items():
            messages = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            return (messages, None) if key == "non_field_errors" else (f"{key}: {messages}", key)
    if isinstance(body, list):
        return "; ".join(map(str, body)), None
    return str(body), None


ERRORS_BY_STATUS = {400: InputError, 401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict}


def raise_for_status(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    message, field = error_text(response)
    error = ERRORS_BY_STATUS.get(response.status_code, VendorError)
    raise error(f"{VENDOR}: {message} (HTTP {response.status_code})", vendor=VENDOR,
                status=response.status_code, vendor_message=message, field=field)
