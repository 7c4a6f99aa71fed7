"""Routers are authenticated unless declared public; public routes are listed in one place."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from forkyard.identity.deps import ACCESS_ATTR, get_principal

# Who may call a route, weakest first; a route shows the strongest demand among its
# dependencies. `org`: a session or any API key of the org (route scopes apply); `account`: a
# session, or a key with the `account` scope; `session`: a signed-in browser only; `sudo`: a
# session that re-entered its password; `staff`: staff only; `node`: a compute server.
ACCESS_ORDER = ("public", "org", "account", "session", "sudo", "staff", "node")
ACCESS_TEXT = {
    "public": "No credentials.",
    "org": "A signed-in session or an API key of the org (the key's scopes apply).",
    "account": "A signed-in session, or an API key with the `account` scope.",
    "session": "A signed-in browser session only; API keys are refused.",
    "sudo": "A signed-in browser session with a fresh sudo grant; API keys are refused.",
    "staff": "Staff only.",
    "node": "A compute server's own credential.",
}


def protected_router(tag: str, prefix: str = "", *, requires: Any = None) -> APIRouter:
    """Every route on this router requires a principal (deny by default); `requires` adds a
    stronger demand (deps.require_session, deps.require_account) to all of them."""
    dependencies = [Depends(get_principal)]
    if requires is not None:
        dependencies.append(Depends(requires))
    return APIRouter(prefix=prefix, tags=[tag], dependencies=dependencies)


def route_access(route: APIRoute) -> str:
    """The strongest demand among the route's dependencies (ACCESS_ORDER)."""
    found = "public"

    def walk(dependant: Dependant) -> None:
        nonlocal found
        for dep in dependant.dependencies:
            level = getattr(dep.call, ACCESS_ATTR, None)
            if level and ACCESS_ORDER.index(level) > ACCESS_ORDER.index(found):
                found = level
            walk(dep)

    walk(route.dependant)
    return found


def document_access(routes: list[Any]) -> None:
    """Put each route's access level in the reference: `x-forkyard-auth` and a line of its
    description, so a reader knows before calling whether an API key will do."""
    for route in routes:
        if isinstance(route, APIRoute):
            level = route_access(route)
            route.openapi_extra = {**(route.openapi_extra or {}), "x-forkyard-auth": level}
            note = f"Access: {ACCESS_TEXT[level]}"
            route.description = f"{route.description}\n\n{note}" if route.description else note


def public_router(tag: str, prefix: str = "") -> APIRouter:
    """For the short public list only (health, signup, login, token links); each is rate-limited."""
    return APIRouter(prefix=prefix, tags=[tag])


def operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def summaries_from_docstrings(routes: list[Any]) -> None:
    """Every operation's summary is the first line of its function's docstring (the reference
    shows it); FastAPI would otherwise title-case the function name."""
    for route in routes:
        if isinstance(route, APIRoute) and not route.summary:
            doc = inspect.getdoc(route.endpoint) or ""
            first = doc.strip().splitlines()[0].strip() if doc.strip() else ""
            if first:
                route.summary = first
