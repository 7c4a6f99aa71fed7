"""Routers are authenticated unless declared public; public routes are listed in one place."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from forkyard.identity.deps import get_principal


def protected_router(tag: str, prefix: str = "") -> APIRouter:
    """Every route on this router requires a principal (deny by default)."""
    return APIRouter(prefix=prefix, tags=[tag], dependencies=[Depends(get_principal)])


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
