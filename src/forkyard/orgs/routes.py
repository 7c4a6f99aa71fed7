"""Org routes (filled in by the orgs work)."""

from fastapi import APIRouter

routers: list[APIRouter] = []
