"""Where the API process spends an `ssh host true` (bench/access.py ssh --profile).

On PYTHONPATH of the `forkyard serve` process the bench starts (FY_SSH_PROFILE names the file
to write): stamps each connection's phases with perf_counter around the gateway's own hooks and
writes every phase's durations (ms) to that file after each connection. Works on the code of any
commit that has these hooks (the bench's before/after runs export an older tree). Only in a
`serve` process. Not used outside benches."""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
import time
from typing import Any

_PATH = os.environ.get("FY_SSH_PROFILE")


def _install(path: str) -> None:
    from forkyard.compute.node_client import client as node_client
    from forkyard.ssh import access, gateway

    steps: dict[str, list[float]] = {}
    marks: dict[int, dict[str, float]] = {}  # by id() of the GatewayConnection

    def mark(conn: Any, name: str) -> None:
        marks.setdefault(id(conn), {})[name] = time.perf_counter()

    def record(name: str, ms: float) -> None:
        steps.setdefault(name, []).append(ms)

    def timed(module: Any, attr: str, name: str) -> None:
        fn = getattr(module, attr, None)
        if fn is None:
            return

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                record(name, (time.perf_counter() - started) * 1000)

        setattr(module, attr, wrapper)

    Conn = gateway.GatewayConnection
    made, begin, completed, lost = (
        Conn.connection_made,
        Conn.begin_auth,
        Conn.auth_completed,
        Conn.connection_lost,
    )

    def connection_made(self: Any, conn: Any) -> None:
        mark(self, "accept")
        made(self, conn)

    async def begin_auth(self: Any, username: str) -> bool:
        mark(self, "begin_auth")
        try:
            return await begin(self, username)
        finally:
            mark(self, "lookup_done")

    def auth_completed(self: Any) -> None:
        mark(self, "auth_completed")
        completed(self)

    def connection_lost(self: Any, exc: Any) -> None:
        lost(self, exc)
        m = marks.pop(id(self), {})
        m["lost"] = time.perf_counter()
        order = ["accept", "begin_auth", "lookup_done", "auth_completed", "process",
                 "process_end", "lost"]  # fmt: skip
        seen = [k for k in order if k in m]
        for a, b in itertools.pairwise(seen):
            record(f"{a} -> {b}", (m[b] - m[a]) * 1000)
        if "accept" in m:
            record("whole connection (accept -> lost)", (m["lost"] - m["accept"]) * 1000)
        with open(path, "w") as out:
            json.dump(steps, out)

    Conn.connection_made = connection_made  # type: ignore[method-assign]
    Conn.begin_auth = begin_auth  # type: ignore[method-assign]
    Conn.auth_completed = auth_completed  # type: ignore[method-assign]
    Conn.connection_lost = connection_lost  # type: ignore[method-assign]

    process = gateway.SshGateway._process

    async def _process(self: Any, proc: Any) -> None:
        owner = proc.get_extra_info("connection").get_owner()
        mark(owner, "process")
        try:
            await process(self, proc)
        finally:
            mark(owner, "process_end")

    gateway.SshGateway._process = _process  # type: ignore[method-assign]
    # Whichever of these the profiled code has (older trees lack the newer ones).
    timed(access, "keys_for_instance", "  sign-in lookup (database)")
    timed(access, "sign_in", "  sign-in lookup (cache or database)")
    timed(access, "running_server", "  running_server (database)")
    # open_session: a new WebSocket in trees before open_warm_session, a warm one after it.
    timed(node_client.NodeClient, "open_session", "  node session (open_session)")
    timed(node_client.NodeClient, "open_warm_session", "  node session: warm WebSocket")


if _PATH and "serve" in getattr(sys, "orig_argv", ()):
    _install(_PATH)
