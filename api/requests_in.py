"""Reading a submit request: JSON only, bounded in size, an object; refused with a clear 4xx
before anything else happens."""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from api.errors import ApiError


async def json_body(request: Request, limit: int) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "UnsupportedMediaType",
                       f"send the job as application/json, not {media_type or 'no content type'}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "TooLarge", f"the body is {declared} bytes; at most {limit} are read")
    chunks, size = [], 0
    async for chunk in request.stream():  # also bounds a chunked body with no length
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "TooLarge", f"the body is over {limit} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "MalformedJSON", f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "InvalidParams", "the body must be an object: {name, params, callback_url?}")
    unknown = sorted(set(data) - {"name", "params", "callback_url", "job_id"})
    if unknown:
        raise ApiError(422, "InvalidParams", f"unknown field(s) {', '.join(unknown)} "
                       "(known: name, params, callback_url, job_id)", field=unknown[0])
    return data
