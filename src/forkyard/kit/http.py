"""HTTP edges shared by every route: the request-id/security-header middleware and the one
error renderer (the shape in shared/API.md)."""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forkyard.kit.errors import ForkyardError
from forkyard.kit.ids import new_id
from forkyard.kit.logging import request_id_var

log = logging.getLogger("forkyard.http")

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class RequestContextMiddleware:
    """Assign or echo X-Request-Id, add security headers, and log one line per request.
    Pure ASGI (no BaseHTTPMiddleware) so it costs microseconds and never buffers streams."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else new_id("req")
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = [0]
        is_docs = scope["path"].startswith(("/docs", "/redoc"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                if not is_docs:
                    headers.append(_API_CSP)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Rendered here, not by Starlette's outermost ServerErrorMiddleware, so a 500 still
            # carries X-Request-Id and the security headers, and nothing internal leaks.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if status_holder[0]:
                raise  # the response already started; nothing sane can be sent now
            body = json.dumps(
                {
                    "error": {
                        "code": "internal_error",
                        "message": "Something went wrong on our side; it was logged.",
                        "request_id": request_id,
                        "details": {},
                    }
                }
            ).encode()
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            if scope["path"] != "/health/live":
                log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status_holder[0],
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status_holder[0],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or new_id("req")


def error_body(
    request: Request, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "request_id": request_id_of(request),
            "details": details or {},
        }
    }


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(request, code, message, details), status_code=status, headers=headers
    )


_HTTP_CODES = {
    400: ("bad_request", "The request could not be processed."),
    401: ("unauthenticated", "Sign in or pass an API key."),
    403: ("forbidden", "You are not allowed to do that."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ForkyardError)
    async def forkyard_error(request: Request, exc: ForkyardError) -> JSONResponse:
        return error_response(
            request, exc.status_code, exc.code, exc.message, exc.details, exc.headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                request, 400, "malformed_json", "The request body is not valid JSON."
            )
        fields = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": e.get("type"),
            }
            for e in errors
        ]
        return error_response(
            request, 422, "validation_failed", "The request did not validate.", {"fields": fields}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", "The request failed."))
        return error_response(
            request,
            exc.status_code,
            code,
            message,
            getattr(exc, "details", None),  # kit/body_limit.BodyTooLarge carries max_bytes
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "internal_error", "Something went wrong on our side; it was logged."
        )


@functools.lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _is_trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: Request, trusted_proxies: Sequence[str] = ()) -> str:
    """The address rate limits, allowlists and the audit log act on. X-Forwarded-For is
    believed only as far as it was written by our own proxies: walking it from the right (each
    proxy appends the address it saw), the first hop that is not a trusted proxy is the client.
    Anything to the left of it was written by the client and may be forged."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(tuple(trusted_proxies))
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [
        hop.strip()
        for value in request.headers.getlist("x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # garbage from beyond our proxies: the last hop we can vouch for
        client = hop
        if not _is_trusted(hop, networks):
            return hop
    return client
