"""`forkyard mcp`: the MCP server on stdin/stdout, for an assistant that starts it as a
subprocess; it calls a Forkyard API over HTTP with one API key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from mcp.server.fastmcp import Context

from forkyard.mcp.tools import build_server


def serve_stdio(api_key: str, base_url: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "forkyard-mcp"}

    @contextlib.asynccontextmanager
    async def remote(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
        # Long commands and forks answer when they finish: no read timeout.
        async with httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(30, read=None)
        ) as api:
            yield api

    build_server(remote).run("stdio")
