"""Routers are authenticated unless declared public; public routes are listed in one place."""

from __future__ import annotations

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
