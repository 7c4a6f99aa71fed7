"""/reference on a running server: the site `make docs` built (docs/build/reference), or, when
there is none, one built once from this server's own schema into the data dir."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from forkyard.reference import site


class ReferenceSite:
    """An ASGI app for `app.mount("/reference", ...)`: static files, built on first use."""

    def __init__(self, app: Any, fallback_dir: Path) -> None:
        self.app = app
        self.fallback_dir = fallback_dir
        self.files: StaticFiles | None = None
        self.lock = asyncio.Lock()

    async def _files(self) -> StaticFiles:
        async with self.lock:
            if self.files is None:
                directory = site.BUILD
                if not (directory / "index.html").exists():
                    directory = self.fallback_dir
                    await asyncio.to_thread(site.build, self.app.openapi(), directory)
                self.files = StaticFiles(directory=directory, html=True)
            return self.files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/reference/"):
            # The pages link relatively: /reference must be /reference/.
            response = RedirectResponse("reference/", 308)
            await response(scope, receive, send)
            return
        files = await self._files()
        await files(scope, receive, send)
