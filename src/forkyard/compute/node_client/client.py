"""One compute server's client: a typed method per node route (node/contract.py models both
ways) over a pooled HTTP client, its call channel for the hot path, and the WebSockets of
sessions and language servers."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import websockets
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect

from forkyard.compute.errors import NodeUnreachable
from forkyard.compute.node_client.errors import RemoteError, raise_remote
from forkyard.compute.node_client.rpc import NodeRpc
from forkyard.compute.node_client.warm import WarmPool, warm_sessions
from forkyard.node import contract as c

M = TypeVar("M", bound=BaseModel)

# A session message carries at most one agent frame of output (64 KiB) or a stdin chunk.
SESSION_MAX_MESSAGE = 1024 * 1024
# One JSON-RPC message of a language server (a didOpen carries a whole file; node/lsp.py).
LSP_MAX_MESSAGE = 16 * 1024 * 1024 + 1024
# A node's refusal to open a language server, as the status the caller sees.
LSP_REFUSALS = {
    "language_server_unavailable": 404,
    "instance_not_found": 404,
    "invalid_request": 422,
    "invalid_root": 422,
    "instance_not_running": 409,
    "too_many_language_servers": 409,
}


class NodeClient:
    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url
        self.rpc = NodeRpc(base_url, secret)
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=50, max_connections=200),
        )

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            r = await self.http.request(
                method,
                path,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadTimeout,
        ) as exc:
            raise NodeUnreachable(details={"server": self.base_url.split("//")[-1]}) from exc
        if r.status_code >= 400:
            raise_remote(r.status_code, r.content)
        return r

    async def _model(
        self,
        method: str,
        path: str,
        answer: type[M],
        body: BaseModel | None = None,
        *,
        timeout: float | None = None,
    ) -> M:
        """One contract call: the body is a contract model, so is the answer (node/contract.py)."""
        payload = body.model_dump(mode="json") if body is not None else None
        r = await self._call(method, path, json=payload, timeout=timeout)
        return answer.model_validate_json(r.content)

    async def _bytes(self, path: str, body: BaseModel) -> AsyncIterator[bytes]:
        """The node's streamed answer, chunk by chunk as it arrives; its error answer is raised
        here, before the first chunk. The caller iterates (or closes) what it gets."""
        request = self.http.build_request(
            "POST",
            path,
            json=body.model_dump(mode="json"),
            timeout=httpx.Timeout(60.0, connect=5.0),
        )
        try:
            r = await self.http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise NodeUnreachable() from exc
        if r.status_code >= 400:
            try:
                content = await r.aread()
            finally:
                await r.aclose()
            raise_remote(r.status_code, content)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in r.aiter_raw():
                    yield chunk
            finally:
                await r.aclose()

        return chunks()

    async def _events(self, path: str, body: BaseModel) -> AsyncIterator[dict[str, Any]]:
        """An NDJSON stream's events (contract.ExecEvent, contract.BuildEvent), as plain dicts:
        a stream's lines are many and each is read once."""
        try:
            async with self.http.stream(
                "POST",
                path,
                json=body.model_dump(mode="json"),
                timeout=httpx.Timeout(None, connect=5.0),
            ) as r:
                if r.status_code >= 400:
                    raise_remote(r.status_code, await r.aread())
                async for line in r.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise NodeUnreachable() from exc

    # --- instances ---

    async def instances(self) -> c.InstancesOut:
        return await self._model("GET", "/node/instances", c.InstancesOut)

    async def storage(self) -> c.StorageOut:
        return await self._model("GET", "/node/storage", c.StorageOut)

    async def port_relay(self) -> c.PortRelayOut:
        """Where the node's port relay listens (forwards/tunnel.py connects there)."""
        return await self._model("GET", "/node/ports", c.PortRelayOut)

    async def boot(
        self, instance_id: str, spec: c.SandboxSpecIn, *, timeout: float = 120
    ) -> c.BootOut:
        """Boot the instance (its first boot from `spec.from_layer` clones that layer)."""
        path = f"/node/instances/{_seg(instance_id)}"
        return await self._model("PUT", path, c.BootOut, spec, timeout=timeout)

    async def stop(self, instance_id: str) -> c.StateOut:
        path = f"/node/instances/{_seg(instance_id)}/stop"
        return await self._model("POST", path, c.StateOut)

    async def destroy(self, instance_id: str, *, timeout: float = 120) -> c.StateOut:
        path = f"/node/instances/{_seg(instance_id)}"
        return await self._model("DELETE", path, c.StateOut, timeout=timeout)

    async def set_network(self, instance_id: str, network: c.NetworkIn) -> c.NetworkOut:
        path = f"/node/instances/{_seg(instance_id)}/network"
        return await self._model("PUT", path, c.NetworkOut, body=network)

    async def flush(self, instance_id: str) -> c.FlushOut:
        path = f"/node/instances/{_seg(instance_id)}/flush"
        return await self._model("POST", path, c.FlushOut)

    async def stats(self, instance_id: str) -> c.StatsOut:
        path = f"/node/instances/{_seg(instance_id)}/stats"
        return await self._model("GET", path, c.StatsOut)

    async def ping(self, instance_id: str) -> c.PingOut:
        path = f"/node/instances/{_seg(instance_id)}/ping"
        return await self._model("POST", path, c.PingOut)

    # --- exec and files: the call channel, and HTTP for streams and large files ---

    async def exec(
        self, instance_id: str, params: c.ExecCall, *, timeout: float = 60.0
    ) -> c.ExecAnswer:
        """An exec to completion over the call channel (plain JSON: the hot path)."""
        answer: c.ExecAnswer = await self.call("exec", instance_id, dict(params), timeout=timeout)
        return answer

    def exec_stream(self, instance_id: str, body: c.ExecStreamIn) -> AsyncIterator[dict[str, Any]]:
        """A command's events as they happen (contract.ExecEvent)."""
        return self._events(f"/node/instances/{_seg(instance_id)}/exec/stream", body)

    async def read_file(self, instance_id: str, body: c.ReadFileIn) -> AsyncIterator[bytes]:
        return await self._bytes(f"/node/instances/{_seg(instance_id)}/files/read", body)

    async def write_file(
        self,
        instance_id: str,
        path: str,
        content: bytes,
        *,
        mode: int,
        make_parents: bool,
        offset: int | None = None,
    ) -> c.FileOut:
        """PUT a file's bytes to the node, which streams them to the agent (files too large
        for one call-channel message). With `offset`, they go into the file from there."""
        params: dict[str, Any] = {"path": path, "mode": mode, "make_parents": make_parents}
        if offset is not None:
            params["offset"] = offset
        r = await self._call(
            "PUT",
            f"/node/instances/{_seg(instance_id)}/files/content",
            params=params,
            content=content,
            headers={"Content-Type": "application/octet-stream"},
            timeout=300.0,
        )
        return c.FileOut.model_validate_json(r.content)

    # --- layers ---

    async def checkpoint(
        self, instance_id: str, layer_id: str, *, timeout: float | None = None
    ) -> c.LayerOut:
        path = f"/node/instances/{_seg(instance_id)}/checkpoint"
        body = c.LayerIn(layer_id=layer_id)
        return await self._model("POST", path, c.LayerOut, body, timeout=timeout)

    async def rollback(
        self, instance_id: str, layer_id: str, *, timeout: float = 300
    ) -> c.RollbackOut:
        path = f"/node/instances/{_seg(instance_id)}/rollback"
        body = c.LayerIn(layer_id=layer_id)
        return await self._model("POST", path, c.RollbackOut, body, timeout=timeout)

    async def fork(
        self, instance_id: str, body: c.ForkIn, *, timeout: float | None = None
    ) -> c.ForkOut:
        path = f"/node/instances/{_seg(instance_id)}/fork"
        return await self._model("POST", path, c.ForkOut, body, timeout=timeout)

    async def layers(self) -> c.LayersOut:
        return await self._model("GET", "/node/layers", c.LayersOut)

    async def layer_usage(self) -> c.LayerUsageOut:
        return await self._model("GET", "/node/layers/usage", c.LayerUsageOut)

    async def get_layer(self, layer_id: str) -> c.LayerOut:
        return await self._model("GET", f"/node/layers/{_seg(layer_id)}", c.LayerOut)

    async def delete_layer(
        self, layer_id: str, *, timeout: float | None = None
    ) -> c.LayerDeletedOut:
        path = f"/node/layers/{_seg(layer_id)}"
        return await self._model("DELETE", path, c.LayerDeletedOut, timeout=timeout)

    async def export_ticket(self, layer_id: str) -> c.ExportTicketOut:
        path = f"/node/layers/{_seg(layer_id)}/export-ticket"
        return await self._model("POST", path, c.ExportTicketOut)

    async def import_layer(
        self, layer_id: str, body: c.ImportIn, *, timeout: float | None = None
    ) -> c.ImportOut:
        path = f"/node/layers/{_seg(layer_id)}/import"
        return await self._model("POST", path, c.ImportOut, body, timeout=timeout)

    async def sweep_layers(self, keep: list[str]) -> c.SweepOut:
        return await self._model("POST", "/node/layers/sweep", c.SweepOut, c.SweepIn(keep=keep))

    # --- image builds ---

    def bootstrap(self, build_id: str, body: c.BootstrapIn) -> AsyncIterator[dict[str, Any]]:
        """Debootstrap into a new build sandbox's disk (contract.BuildEvent)."""
        return self._events(f"/node/instances/{_seg(build_id)}/bootstrap", body)

    def fetch_packages(self, build_id: str, body: c.PackagesIn) -> AsyncIterator[dict[str, Any]]:
        """Download packages into a running build sandbox (contract.BuildEvent)."""
        return self._events(f"/node/instances/{_seg(build_id)}/packages", body)

    # --- sessions and watches (node/api/sessions.py) ---

    def session_pool(self) -> WarmPool[ClientConnection]:
        """Session WebSockets to this node, opened and authenticated ahead of need (warm.py)."""
        base = self.rpc.url.removesuffix("/node/rpc")  # already ws:// or wss://
        return warm_sessions(f"{base}/node/sessions/connect", self.rpc.secret, SESSION_MAX_MESSAGE)

    async def open_session(self, instance_id: str, body: c.SessionOpenIn) -> ClientConnection:
        """A terminal or a command with streamed stdin (node/api/sessions.py): a warm session
        WebSocket with its opening message sent, which names the instance. The caller speaks
        the rest of the protocol and closes it."""
        pool = self.session_pool()
        opening = c.SessionConnectIn(
            instance_id=instance_id, **body.model_dump(exclude_none=True)
        ).model_dump_json(exclude_none=True)
        ws = pool.take()
        if ws is not None:
            try:
                await ws.send(opening)
                return ws
            except websockets.ConnectionClosed:
                pass  # the node restarted, or retired it just now: a fresh one
        ws = await pool.open()
        try:
            await ws.send(opening)
        except websockets.ConnectionClosed as exc:
            raise NodeUnreachable(details={"server": self.base_url.split("//")[-1]}) from exc
        return ws

    def watch(self, instance_id: str, body: c.WatchIn) -> AsyncIterator[dict[str, Any]]:
        """A directory's changes inside the instance (contract.WatchEventOut, as dicts)."""
        return self._events(f"/node/instances/{_seg(instance_id)}/files/watch", body)

    # --- language servers (node/api/lsp.py) ---

    async def lsp_servers(self, instance_id: str) -> c.LspServersOut:
        """The language servers the instance's image has, and those running."""
        return await self._model("GET", f"/node/instances/{_seg(instance_id)}/lsp", c.LspServersOut)

    async def open_lsp(self, instance_id: str, language: str, root: str) -> ClientConnection:
        """A client of the instance's shared language server for `root`: the node's WebSocket,
        past its opening message. Each text message after it is one JSON-RPC message."""
        base = self.rpc.url.removesuffix("/node/rpc")
        url = f"{base}/node/instances/{_seg(instance_id)}/lsp/{_seg(language)}?root={quote(root)}"
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {self.rpc.secret}"},
                compression=None,
                proxy=None,
                max_size=LSP_MAX_MESSAGE,
                open_timeout=5,
                ping_interval=20,
                ping_timeout=20,
            )
            opened = c.LspOpenOut.model_validate_json(await asyncio.wait_for(ws.recv(), 60))
        except (OSError, TimeoutError, ValueError, websockets.WebSocketException) as exc:
            raise NodeUnreachable(details={"server": self.base_url.split("//")[-1]}) from exc
        if not opened.ok:
            await ws.close()
            code = opened.code or "language_server_failed"
            raise RemoteError(LSP_REFUSALS.get(code, 502), code, opened.message or "", {})
        return ws

    async def call(
        self, op: str, instance_id: str, params: dict[str, Any], *, timeout: float = 60.0
    ) -> Any:
        """A hot-path call (exec, small file operations) over the node's call channel: its
        params and answer are the contract's CHANNEL_OPS shapes."""
        return await self.rpc.call(op, instance_id, params, timeout=timeout)

    async def close(self) -> None:
        await self.rpc.close()
        await self.http.aclose()


def _seg(value: str) -> str:
    """One path segment: an id cannot reach another route of the node."""
    return quote(value, safe="")


def b64decode(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""
