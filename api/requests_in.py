"""Reading a submit request: JSON only, bounded in size and depth, an object; refused with a clear
4xx before anything else happens."""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from api.errors import ApiError

# No job's parameters nest this deep; a deeper body is refused before any code walks it.
MAX_DEPTH = 32


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def depth(value: Any) -> int:
    """How deep containers nest in `value`, found without recursion (a deep body cannot exhaust the stack)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        current, level = pending.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                pending.extend((child, level + 1) for child in (current.values() if isinstance(current, dict)
                                                                else current))
    return deepest


def parse_json(raw: bytes) -> Any:
    try:
        data = json.loads(raw, parse_constant=reject_constant)
    except RecursionError:
        raise ApiError(400, "MalformedJSON", f"the body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # also bad UTF-8, NaN and Infinity, and integers of thousands of digits
        raise ApiError(400, "MalformedJSON", f"the body is not JSON: {exc}") from None
    if depth(data) > MAX_DEPTH:
        raise ApiError(400, "MalformedJSON", f"the body nests deeper than {MAX_DEPTH} levels")
    return data


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
    data = parse_json(b"".join(chunks))
    if not isinstance(data, dict):
        raise ApiError(422, "InvalidParams", "the body must be an object: {name, params, callback_url?}")
    unknown = sorted(set(data) - {"name", "params", "callback_url", "job_id"})
    if unknown:
        raise ApiError(422, "InvalidParams", f"unknown field(s) {', '.join(unknown)} "
                       "(known: name, params, callback_url, job_id)", field=unknown[0])
    return data
