"""The language servers of an instance, as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LspRunning(BaseModel):
    root: str = Field(description="The workspace root the server was started for.")
    clients: int = Field(description="WebSockets sharing this server now.")
    started_at: datetime


class LanguageServer(BaseModel):
    language: str = Field(description="The `{language}` of the WebSocket route, e.g. `python`.")
    name: str = Field(description="The server, e.g. `pylsp`, `gopls`.")
    command: list[str] = Field(description="How it is started inside the instance (stdio).")
    path: str = Field(description="Where the instance's PATH found it.")
    running: list[LspRunning] = Field(description="Its running servers, one per root.")
