"""Where the API process spends a `POST /v1/instances?wait=true` (bench/create_profile.py).

On PYTHONPATH of the `forkyard serve` process the bench starts (FY_CREATE_PROFILE names the
file to write): times each step of create_and_boot with perf_counter around the very functions
it calls, and every SQL statement run meanwhile (cursor events), attributed to the innermost
step running it. Writes per-create lists of milliseconds to that file after every create. Only
in a `serve` process. Not used outside benches."""

from __future__ import annotations

import contextvars
import functools
import json
import os
import re
import sys
import time
from typing import Any

_PATH = os.environ.get("FY_CREATE_PROFILE")
_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("fy_step", default=None)
_acc: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "fy_acc", default=None
)


def _label(sql: str) -> str:
    """A statement's kind and table: `INSERT jobs`, `SELECT instances`, `SELECT pg_notify`."""
    s = " ".join(sql.split())
    m = re.match(r"(INSERT INTO|UPDATE|DELETE FROM|SELECT|WITH)\s+(\S+)?", s, re.I)
    if not m:
        return s[:30]
    verb = m.group(1).split()[0].upper()
    if verb == "SELECT":
        if "pg_notify" in s:
            return "SELECT pg_notify"
        f = re.search(r"\bFROM\s+(\w+)", s, re.I)
        return f"SELECT {f.group(1) if f else s[7:40]}"
    table = (m.group(2) or "").strip('"')
    return f"{verb} {table}"


def _add(key: str, ms: float) -> None:
    acc = _acc.get()
    if acc is not None:
        acc[key] = acc.get(key, 0.0) + ms
        acc["#" + key] = acc.get("#" + key, 0.0) + 1


def _install(path: str) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncSession

    from forkyard.compute import instances, provision, service
    from forkyard.compute.node_client.client import NodeClient

    creates: list[dict[str, float]] = []

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        conn.info.setdefault("fy_t", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        started = conn.info["fy_t"].pop()
        _add(
            f"sql [{_step.get() or '-'}] {_label(statement)}",
            (time.perf_counter() - started) * 1000,
        )

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _step.set(name)
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                _add(f"step {name}", (time.perf_counter() - started) * 1000)
                _step.reset(token)

        return wrapper

    for mod, names in (
        (
            service,
            (
                "check_quota",
                "new_stack",
                "place",
                "provision",
                "record",
                "boot",
                "ensure_stack",
                "build_spec",
                "after_boot",
                "enter",
                "get_profile",
            ),
        ),
        (provision, ("emit", "enqueue")),
        (instances, ("emit",)),
    ):
        for n in names:
            setattr(mod, n, timed(f"{mod.__name__.rsplit('.', 1)[-1]}.{n}", getattr(mod, n)))
    NodeClient.boot = timed("node.boot (HTTP)", NodeClient.boot)  # type: ignore[method-assign]
    AsyncSession.commit = timed("commit", AsyncSession.commit)  # type: ignore[method-assign]
    whole = service.create_and_boot

    async def create_and_boot(*args: Any, **kwargs: Any) -> Any:
        acc: dict[str, float] = {}
        token = _acc.set(acc)
        started = time.perf_counter()
        try:
            return await whole(*args, **kwargs)
        finally:
            acc["whole create_and_boot"] = (time.perf_counter() - started) * 1000
            _acc.reset(token)
            creates.append(acc)
            with open(path, "w") as out:
                json.dump(creates, out)

    service.create_and_boot = create_and_boot  # type: ignore[assignment]
    from forkyard.compute import routes

    routes.create_and_boot = create_and_boot  # type: ignore[assignment]


if _PATH and "serve" in getattr(sys, "orig_argv", ()):
    _install(_PATH)
