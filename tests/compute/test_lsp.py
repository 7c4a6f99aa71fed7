"""Language servers over the API's WebSocket, with an LSP client written here: pylsp of the
default image gives a completion and a diagnostic for files written through the files API; a
second client shares the server; another org's key is refused; an unused server stops."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
import websockets

from forkyard.node import lsp as node_lsp
from tests.compute.conftest import Platform, create_running, signed_in

pytestmark = pytest.mark.sandbox

ROOT = "/root/proj"


class LspClient:
    """A minimal LSP client: one JSON-RPC message per WebSocket text message."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []

    async def request(self, method: str, params: Any, id: int | str | None = None) -> Any:
        request_id = next(self.ids) if id is None else id
        await self.ws.send(
            json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
            if "method" in message and "id" in message:  # the server asks: answer plainly
                await self.ws.send(
                    json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": None})
                )
            elif "method" in message:
                self.notifications.append(message)
            elif message.get("id") == request_id:
                assert "error" not in message, message
                return message["result"]

    async def notify(self, method: str, params: Any) -> None:
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    async def diagnostics(self, uri: str) -> list[dict[str, Any]]:
        """The first non-empty diagnostics published for `uri`."""
        while True:
            for n in self.notifications:
                params = n["params"]
                published = n["method"] == "textDocument/publishDiagnostics"
                if published and params["uri"] == uri and params["diagnostics"]:
                    return list(params["diagnostics"])
            self.notifications.clear()
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
            if "method" in message and "id" not in message:
                self.notifications.append(message)

    async def initialize(self) -> dict[str, Any]:
        result = await self.request(
            "initialize",
            {"processId": None, "rootUri": f"file://{ROOT}", "capabilities": {}},
        )
        await self.notify("initialized", {})
        return dict(result)

    async def open(self, path: str, text: str) -> str:
        uri = f"file://{path}"
        await self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
        )
        return uri


async def test_lsp_completion_diagnostics_sharing_and_isolation(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, compute_settings: Any, run_jobs: Any
) -> None:
    monkeypatch.setattr(node_lsp, "IDLE_GRACE_S", 1.0)
    inst = await create_running(platform.api, memory_mb=512)
    iid = inst["id"]
    good, broken = "import os\nos.pa", "def f(:\n    return undefined_name\n"
    for name, text in (("good.py", good), ("broken.py", broken)):
        r = await platform.api.post(
            f"/v1/instances/{iid}/files", json={"path": f"{ROOT}/{name}", "content": text}
        )
        assert r.status_code in (200, 201), r.text

    # What the image offers: found on its PATH.
    r = await platform.api.get(f"/v1/instances/{iid}/lsp")
    assert r.status_code == 200, r.text
    servers = {s["language"]: s for s in r.json()["data"]}
    assert servers["python"]["name"] == "pylsp"
    assert servers["python"]["running"] == []

    key = platform.api.headers["authorization"]
    ws_url = platform.url.replace("http", "ws") + f"/v1/instances/{iid}/lsp/python?root={ROOT}"
    async with websockets.connect(ws_url, additional_headers={"Authorization": key}) as ws_a:
        a = LspClient(ws_a)
        init = await a.initialize()
        assert "completionProvider" in init["capabilities"]

        uri = await a.open(f"{ROOT}/good.py", good)
        items = await a.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}},
        )
        labels = {i["label"] for i in (items["items"] if isinstance(items, dict) else items)}
        assert "path" in labels, labels

        bad_uri = await a.open(f"{ROOT}/broken.py", broken)
        diagnostics = await a.diagnostics(bad_uri)
        assert diagnostics[0]["range"]["start"]["line"] == 0, diagnostics

        # A second client on the same server: initialize answered from the first, and the
        # same request id from both clients reaches each its own answer.
        async with websockets.connect(ws_url, additional_headers={"Authorization": key}) as ws_b:
            b = LspClient(ws_b)
            assert (await b.initialize())["capabilities"] == init["capabilities"]
            r = await platform.api.get(f"/v1/instances/{iid}/lsp")
            running = r.json()["data"][0]["running"]
            assert [(x["root"], x["clients"]) for x in running] == [(ROOT, 2)]

            hover = {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 8}}
            complete = {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 5}}
            got_a, got_b = await asyncio.gather(
                a.request("textDocument/completion", complete, id=99),
                b.request("textDocument/hover", hover, id=99),
            )
            assert isinstance(got_a, dict | list) and "contents" not in got_a
            assert got_b is not None and "contents" in got_b, got_b
            # Shutdown from one client leaves the server to the other.
            assert await b.request("shutdown", None) is None
        again = await a.request("textDocument/completion", complete)
        assert again

    # Another org's key: refused, as for an unknown instance.
    other_api, other_browser, _ = await signed_in(
        platform.url, "other-lsp@example.com", compute_settings, run_jobs
    )
    try:
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(
                ws_url, additional_headers={"Authorization": other_api.headers["authorization"]}
            ):
                pass
        assert (await other_api.get(f"/v1/instances/{iid}/lsp")).status_code == 404
    finally:
        await other_api.aclose()
        await other_browser.aclose()
    # No credentials, and a root that is not there.
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url):
            pass
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(
            ws_url.replace(ROOT, "/nope"), additional_headers={"Authorization": key}
        ):
            pass

    # Unused, it stops after the grace.
    for _ in range(100):
        r = await platform.api.get(f"/v1/instances/{iid}/lsp")
        if r.json()["data"][0]["running"] == []:
            break
        await asyncio.sleep(0.1)
    assert r.json()["data"][0]["running"] == []
