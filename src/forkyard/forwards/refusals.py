"""What a preview host answers when it cannot reach the app: JSON for API clients (the error
shape of shared/API.md), a small page for browsers, a refused upgrade for websockets."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from starlette.types import Receive, Scope, Send

from forkyard.kit.ids import new_id


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def header(scope: Scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return ""


def wants_json(scope: Scope) -> bool:
    accept = header(scope, b"accept")
    return "text/html" not in accept or bool(header(scope, b"authorization"))


async def refuse(scope: Scope, receive: Receive, send: Send, refused: Refused) -> None:
    if scope["type"] == "websocket":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": refused.status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        body = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
        await send({"type": "websocket.http.response.body", "body": body})
        return
    request_id = header(scope, b"x-request-id")[:100] or new_id("req")
    headers = [(b"x-request-id", request_id.encode()), (b"cache-control", b"no-store")]
    if refused.status == 429:
        headers.append((b"retry-after", b"60"))
    if wants_json(scope):
        body = json.dumps(
            {
                "error": {
                    "code": refused.code,
                    "message": refused.message,
                    "request_id": request_id,
                    "details": refused.details,
                }
            }
        ).encode()
        headers.append((b"content-type", b"application/json"))
    else:
        body = _PAGE.format(
            status=refused.status, code=escape(refused.code), message=escape(refused.message)
        ).encode()
        headers.append((b"content-type", b"text/html; charset=utf-8"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{status} {code}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>{status}: {code}</h1><p>{message}</p><p><small>Forkyard preview</small></p></body></html>
"""
