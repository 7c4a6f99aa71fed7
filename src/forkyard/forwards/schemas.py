"""Request and response shapes for port forwards."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class PortForwardCreate(BaseModel):
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "tcp"] = "http"
    visibility: Literal["private", "public"] = "private"
    name: str | None = Field(default=None, max_length=200)


class PortForwardOut(BaseModel):
    id: str
    instance_id: str
    port: int
    protocol: Literal["http", "tcp"]
    visibility: Literal["private", "public"]
    name: str | None
    url: str = Field(
        description="http: the preview URL; tcp: the WebSocket tunnel (`.../connect`)."
    )
    created_at: datetime


class ShareOut(BaseModel):
    url: str = Field(description="Opens the preview once and sets a cookie for its host alone.")
    expires_at: datetime
