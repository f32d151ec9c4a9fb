"""One body limit for every route (GEOQUEUE_API_MAX_BODY_BYTES): a request that declares a larger
body gets 413 before any of it is read, and one sent in chunks gets 413 as soon as it passes the
limit. Without it a form (the login) would spool any upload to disk, and fields to memory.

FastAPI's own `max_body_size` counts only what a handler reads: a handler that reads no body
(a DELETE, a list) runs first and is refused afterwards, in another error shape; here nothing runs."""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import body as error_body


class BodyTooLarge(HTTPException):
    # An HTTPException, so that FastAPI's form and body readers pass it on instead of turning it into a 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self.refusal()(scope, receive, send)
            return
        received, started = 0, False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, noting_send)
        except BodyTooLarge:
            # Raised where no handler answers it (a stream reading for a disconnect): answer here if still possible.
            if not started:
                await self.refusal()(scope, receive, send)

    def refusal(self) -> JSONResponse:
        return too_large(BodyTooLarge(self.limit))


def too_large(exc: BodyTooLarge) -> JSONResponse:
    # The rest of the body is never read: the connection closes after the answer.
    return JSONResponse(error_body("TooLarge", exc.detail), 413, headers={"Connection": "close"})
