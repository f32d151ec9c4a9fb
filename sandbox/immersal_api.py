"""Immersal stand-in: reading a request body and writing the answer, as the vendor's C server does."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response


# --- request helpers: a C server reads what it finds and defaults the rest ---
def _number(body: dict, key: str, kind: Callable = float) -> Any:
    value = body.get(key, 0)
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return kind(0)


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    return value is True or (isinstance(value, (int, float)) and value != 0)


def _answer(error: str = "none", **fields: Any) -> Response:
    # Always HTTP 200: the vendor reports outcomes in the body, "error" first as in its docs.
    return Response(json.dumps({"error": error, **fields}), status=200, mimetype="application/json")
