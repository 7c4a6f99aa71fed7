"""Where the API process spends a preview request (bench/access.py preview --profile).

On PYTHONPATH of the `forkyard serve` process the bench starts (FY_PREVIEW_PROFILE names the
file to write): times the preview proxy's steps with perf_counter around the very functions it
calls, and writes each step's durations (ms) to that file every 100 requests. Only in a
`serve` process: the bench's own and the node's are left alone. Not used outside benches."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any

_PATH = os.environ.get("FY_PREVIEW_PROFILE")


def _install(path: str) -> None:
    from forkyard.forwards import proxy, service

    steps: dict[str, list[float]] = {}
    count = [0]

    def record(name: str, started: float) -> None:
        steps.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    def timed_async(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                record(name, started)

        return wrapper

    def timed_sync(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record(name, started)

        return wrapper

    lookup = service.preview_target

    async def preview_target(db: Any, instance_id: str, port: int) -> Any:
        known = service.previews.get(instance_id)
        hit = known is not None and port in known
        started = time.perf_counter()
        try:
            return await lookup(db, instance_id, port)
        finally:
            record("forward lookup, cached" if hit else "forward lookup, database", started)

    service.preview_target = preview_target  # type: ignore[assignment]
    service.parse_preview_host = timed_sync("host parse", service.parse_preview_host)  # type: ignore[assignment]
    proxy._authorize = timed_async("auth (key or cookie)", proxy._authorize)  # type: ignore[assignment]
    proxy.connect_node_port = timed_async("tunnel take", proxy.connect_node_port)  # type: ignore[assignment]
    proxy.proxy_http = timed_async(  # type: ignore[assignment]
        "upstream (node, app and back)", proxy.proxy_http
    )
    call = proxy.PreviewProxy.__call__

    async def whole(self: Any, scope: Any, receive: Any, send: Any) -> None:
        host = dict(scope.get("headers", ())).get(b"host", b"")
        started = time.perf_counter()
        try:
            await call(self, scope, receive, send)
        finally:
            if b"-inst" in host:  # a preview host; the API's own requests pass through too
                record("whole middleware", started)
                count[0] += 1
                if count[0] % 100 == 0:
                    with open(path, "w") as out:
                        json.dump(steps, out)

    proxy.PreviewProxy.__call__ = whole  # type: ignore[method-assign]


if _PATH and "serve" in getattr(sys, "orig_argv", ()):
    _install(_PATH)
