"""DroneMapper stand-in: errors in Django REST Framework's shapes, and request/response helpers."""
from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request

# --- errors in Django REST Framework's shapes ---

class ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers or {}


def not_found(detail: str = "Not found.") -> ApiError:
    return ApiError(404, {"detail": detail})


def invalid(body: Any) -> ApiError:
    """400 the way DRF renders it: {"field": ["msg"]}, or ["msg"] for a bare ValidationError."""
    return ApiError(400, body)


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- request and response helpers ---

def _json(data: Any, status: int = 200) -> Response:
    response = jsonify(data)
    response.status_code = status
    return response


def _django_404() -> Response:
    """What a WebODM without the route answers: Django's page, not JSON."""
    _discard_body()
    return Response("<h1>Not Found</h1><p>The requested resource was not found on this server.</p>",
                    status=404, mimetype="text/html")


def _discard_body() -> None:
    try:
        while request.stream.read(1 << 16):
            pass
    except (OSError, ValueError):
        pass


def _request_data():
    """Form fields or a JSON object, as DRF's parsers give `request.data`."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise invalid({"detail": "JSON parse error"})
        return data
    request.max_form_parts = None  # Django 2.2 (WebODM's) has no cap on the number of files
    return request.form


def _request_files() -> list:
    if request.is_json:
        return []
    request.max_form_parts = None
    return [f for key in request.files for f in request.files.getlist(key)]  # any field name counts


def _project_fields(data, require_name: bool) -> dict:
    fields = {k: str(data[k]) for k in ("name", "description") if k in data}
    if require_name and "name" not in fields:
        raise invalid({"name": ["This field is required."]})
    if "name" in fields and not fields["name"].strip():
        raise invalid({"name": ["This field may not be blank."]})
    return fields


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "1", "yes", "on") else False if text in ("false", "0", "no", "off", "") else None


def _ordered(rows: list[dict], ordering: str) -> list[dict]:
    for key in reversed([k.strip() for k in ordering.split(",") if k.strip()]):
        name = key.lstrip("-")
        if rows and name in rows[0]:  # DRF ignores fields it cannot order by
            rows = sorted(rows, key=lambda r: (r[name] is None, r[name]), reverse=key.startswith("-"))
    return rows


def _page(rows: list[dict], page: str, size: int) -> dict:
    pages = max(1, math.ceil(len(rows) / size))
    if not page.isdigit() or not 1 <= int(page) <= pages:
        raise not_found("Invalid page.")
    number = int(page)

    def link(n: int) -> str:
        query = {k: v for k, v in request.args.items() if k != "page"}
        if n > 1:
            query["page"] = str(n)
        return request.base_url + ("?" + urlencode(query) if query else "")

    return {"count": len(rows), "next": link(number + 1) if number < pages else None,
            "previous": link(number - 1) if number > 1 else None,
            "results": rows[(number - 1) * size: number * size]}
