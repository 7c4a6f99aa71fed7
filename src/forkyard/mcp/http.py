"""/mcp: the MCP server over streamable HTTP, for a Bearer API key. The key is checked as any
API request checks it; each tool call then goes back through the whole app in-process (ASGI,
no socket) with the same key and client address, so scopes, tenancy, the IP allowlist and rate
limits apply to it exactly as to a direct call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from mcp.server.fastmcp import Context
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from forkyard.identity.deps import get_principal
from forkyard.kit.errors import ForkyardError, Unauthenticated
from forkyard.kit.http import error_response
from forkyard.mcp.tools import build_server

PATH = "/mcp"
# An exec may run an hour (its timeout_s maximum); a fork of many waits for every child.
CALL_TIMEOUT_S = 3700
FORWARDED = ("authorization", "x-forwarded-for", "user-agent", "x-request-id")


@contextlib.asynccontextmanager
async def _loopback(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    request = ctx.request_context.request
    if not isinstance(request, Request):
        raise RuntimeError("an HTTP tool call without its request")
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
    client = request.scope.get("client") or ("127.0.0.1", 0)
    transport = httpx.ASGITransport(app=request.scope["app"], client=tuple(client))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://forkyard.internal",
        headers=headers,
        timeout=CALL_TIMEOUT_S,
    ) as api:
        yield api


class McpEndpoint:
    """The ASGI app at /mcp: authenticate, then hand the request to the MCP transport."""

    def __init__(self) -> None:
        # Stateless: any API process can answer any request of a session.
        self.sessions = StreamableHTTPSessionManager(
            app=build_server(_loopback)._mcp_server, stateless=True, json_response=True
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            if not request.headers.get("authorization"):
                raise Unauthenticated("Use `Authorization: Bearer <api key>`.")
            # Checked as a read: a read-only key may list and read; the tools' own calls are
            # what a write scope is checked on.
            await get_principal(Request({**scope, "method": "GET"}, receive))
        except ForkyardError as exc:
            response = error_response(
                request, exc.status_code, exc.code, exc.message, exc.details, exc.headers or None
            )
            await response(scope, receive, send)
            return
        await self.sessions.handle_request(scope, receive, send)


def mount(app: FastAPI) -> McpEndpoint:
    endpoint = McpEndpoint()
    app.router.routes.append(Route(PATH, endpoint, methods=["GET", "POST", "DELETE"]))
    return endpoint


@contextlib.asynccontextmanager
async def running(endpoint: McpEndpoint) -> AsyncIterator[None]:
    """The MCP transport's task group, for the app's lifespan. It lives in a task of its own:
    an anyio task group must be left by the task that entered it, and a lifespan is not always
    entered and left by one task (test fixtures, some servers)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with endpoint.sessions.run():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raises why it could not start
    try:
        yield
    finally:
        stop.set()
        await task
