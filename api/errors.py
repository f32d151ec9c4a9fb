"""One error shape for every refusal: {"error": type, "detail": message, "field": dotted path or null}."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from geoqueue.params import InvalidParams


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.field, self.headers = status, error, detail, field, headers


def body(error: str, detail: str, field: str | None = None) -> dict:
    return {"error": error, "detail": detail, "field": field}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(body(exc.error, exc.detail, exc.field), exc.status, headers=exc.headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(InvalidParams)
    async def invalid(request: Request, exc: InvalidParams) -> JSONResponse:
        # JobConflict is an InvalidParams too: the id names another job.
        status, error = (409, "JobConflict") if type(exc).__name__ == "JobConflict" else (422, "InvalidParams")
        return JSONResponse(body(error, str(exc), exc.field), status)

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or None
        return JSONResponse(body("InvalidParams", f"{field}: {first['msg']}", field), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(body("HTTPError", str(exc.detail)), exc.status_code, headers=exc.headers)
