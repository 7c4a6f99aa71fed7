"""The request body limit, enforced before any body is read, so no caller (signed in or not)
can make a process hold more than the limit of one request.

A declared Content-Length over the limit is answered 413 at once, without reading a byte of the
body. A body without one (chunked) is counted as the application reads it, and the read that
crosses the limit raises `BodyTooLarge`: inside a route it is rendered as 413 by the error
handlers; raised in a middleware that buffers the body (idempotency), it reaches this one, which
answers 413 itself. Either way, reading stops at the limit and the server closes the connection
rather than drain the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forkyard.kit.ids import new_id

CODE = "payload_too_large"
MESSAGE = "The request body is too large."


class BodyTooLarge(HTTPException):
    """A request body over the limit (413 `payload_too_large`, `details.max_bytes`)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=MESSAGE)
        self.details = {"max_bytes": max_bytes}


class BodyLimitMiddleware:
    """`default_max` for every request; a path matching one of `larger` gets its own limit
    (file uploads). Pure ASGI: it costs a header scan on the hot path and buffers nothing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_max: int,
        larger: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.default_max = default_max
        self.larger = [(re.compile(pattern), limit) for pattern, limit in larger]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.larger:
            if pattern.fullmatch(path):
                return limit
        return self.default_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await _answer(scope, send, 400, "bad_request", "Content-Length is invalid.")
                    return
                if declared > limit:
                    await _answer(scope, send, 413, CODE, MESSAGE, {"max_bytes": limit})
                    return
                break

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _answer(scope, send, 413, CODE, MESSAGE, exc.details)


async def _answer(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, int] | None = None,
) -> None:
    request_id = scope.get("state", {}).get("request_id") or new_id("req")
    body = json.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "request_id": request_id,
                "details": details or {},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot carry another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
