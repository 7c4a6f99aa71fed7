"""The node's HTTP API: the control plane sends work here (authenticated with the node secret).
It is a thin layer over a Driver; nothing here knows about orgs or users."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from forkyard.kit.body_limit import BodyLimitMiddleware
from forkyard.kit.crypto import constant_time_equal
from forkyard.kit.errors import ForkyardError, Unauthenticated
from forkyard.node import images as node_images
from forkyard.node import rpc
from forkyard.node.drivers.base import Driver, SandboxSpec
from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.errors import NodeError
from forkyard.node.layers import (
    TICKET_HEADER,
    TICKET_TTL_S,
    LayerInfo,
    LayerInUse,
    check_export_ticket,
    check_layer_id,
    export_stream,
    export_ticket,
    pull_layer,
    transfer_client,
)

log = logging.getLogger("forkyard.node")


class ExecBody(BaseModel):
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdin_b64: str | None = None
    timeout_s: float | None = None
    max_output: int = 1024 * 1024


class PathBody(BaseModel):
    path: str
    offset: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=0)
    # A whole-file read of a larger file is refused (file_too_large); no read sends more.
    max_size: int = Field(default=64 * 1024 * 1024, ge=0)


# Request bodies the node reads before its authentication runs are bounded: a stranger at the
# node's port holds no more than this of its memory. A streamed file write is read only after
# authentication, chunk by chunk as the agent takes it (`/files/content`).
MAX_NODE_BODY = 32 * 1024 * 1024
MAX_NODE_UPLOAD = 1024 * 1024 * 1024


def create_node_app(driver: Driver, secret: str, images: dict[str, Path] | None = None) -> FastAPI:
    """`images` maps image names the control plane uses (e.g. `default`) to rootfs paths."""
    known_images = images or {}
    # Image builds: the machine's image cache (the .deb cache) and the empty rootfs under suites.
    image_cache = node_images.image_cache_root(
        known_images, Path(getattr(driver, "data_dir", ".")) / "images"
    )
    if "default" in known_images:
        known_images.setdefault(
            node_images.SCRATCH_IMAGE, node_images.ensure_scratch_image(image_cache)
        )

    # A dependency, not an HTTP middleware: BaseHTTPMiddleware costs milliseconds per call on
    # the exec hot path (bench/compute.py).
    async def authenticate(request: HTTPConnection) -> None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if given and constant_time_equal(given, secret):
            return
        # Another node pulling a layer presents a ticket for that one export (node/layers.py).
        ticket, layer_id = request.headers.get(TICKET_HEADER), request.path_params.get("layer_id")
        if (
            ticket
            and layer_id
            and request.scope.get("method") == "GET"
            and request.url.path == f"/node/layers/{layer_id}/export"
            and check_export_ticket(secret, layer_id, ticket)
        ):
            return
        raise Unauthenticated("The node secret is wrong.")

    app = FastAPI(
        title="Forkyard node",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(authenticate)],
    )
    app.state.driver = driver
    app.add_middleware(
        BodyLimitMiddleware,
        default_max=MAX_NODE_BODY,
        larger=[(r"/node/instances/[^/]+/files/content", MAX_NODE_UPLOAD)],
    )

    @app.exception_handler(ForkyardError)
    async def node_error(request: Request, exc: ForkyardError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            status_code=exc.status_code,
        )

    @app.get("/node/instances")
    async def list_instances() -> dict[str, Any]:
        return {"instances": {i: driver.state(i) for i in sorted(driver.list_owned())}}

    @app.get("/node/storage")
    async def storage_report() -> dict[str, Any]:
        return await asyncio.to_thread(_storage_report, driver)

    @app.put("/node/instances/{instance_id}")
    async def start(instance_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        spec["instance_id"] = instance_id
        from_layer = spec.pop("from_layer", None)
        sandbox_spec = _resolve_spec(driver, spec, known_images)
        if from_layer and driver.state(instance_id) == "absent":
            # First boot of a restored or forked instance: its disk is a clone of the layer.
            info = await _layered(driver).start(sandbox_spec, from_layer=from_layer)
        else:
            info = await driver.start(sandbox_spec)
        return {"pid": info.pid, "boot_ms": info.boot_ms, "created_disk": info.created_disk}

    @app.post("/node/instances/{instance_id}/stop")
    async def stop(instance_id: str) -> dict[str, Any]:
        await driver.stop(instance_id)
        return {"state": driver.state(instance_id)}

    @app.delete("/node/instances/{instance_id}")
    async def destroy(instance_id: str) -> dict[str, Any]:
        if isinstance(driver, SandboxDriver):  # an image build step still running: stop it first
            await node_images.cancel_step(driver, instance_id)
        await driver.destroy(instance_id)
        return {"state": "absent"}

    @app.post("/node/instances/{instance_id}/flush")
    async def flush(instance_id: str) -> dict[str, Any]:
        await driver.flush(instance_id)
        return {"flushed": True}

    @app.get("/node/instances/{instance_id}/stats")
    async def stats(instance_id: str) -> dict[str, Any]:
        s = await driver.stats(instance_id)
        return {"state": driver.state(instance_id), **s.__dict__}

    @app.post("/node/instances/{instance_id}/ping")
    async def ping(instance_id: str) -> dict[str, Any]:
        return await driver.ping(instance_id)

    @app.websocket("/node/rpc")
    async def rpc_channel(websocket: WebSocket) -> None:
        await rpc.serve(websocket, driver)

    @app.post("/node/instances/{instance_id}/exec/stream")
    async def run_streamed(instance_id: str, body: ExecBody, request: Request) -> StreamingResponse:
        stream = await driver.exec_stream(
            instance_id,
            body.command,
            cwd=body.cwd,
            env=body.env,
            stdin=base64.b64decode(body.stdin_b64) if body.stdin_b64 else None,
            timeout=body.timeout_s,
        )

        async def lines() -> AsyncIterator[bytes]:
            # NDJSON, one event per line. If the caller goes away the generator is closed,
            # and closing the stream kills the process group inside the instance.
            try:
                async for ev in stream:
                    out: dict[str, Any] = {"type": ev.type}
                    if ev.type in ("stdout", "stderr"):
                        out["data_b64"] = rpc.b64(ev.data)
                    elif ev.type == "start":
                        out["pid"] = ev.pid
                    else:
                        out.update(
                            exit_code=ev.exit_code,
                            signal=ev.signal,
                            timed_out=ev.timed_out,
                            duration_ms=ev.duration_ms,
                        )
                    yield (json.dumps(out) + "\n").encode()
            except ForkyardError as exc:
                yield (
                    json.dumps({"type": "error", "code": exc.code, "message": exc.message}) + "\n"
                ).encode()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(stream.aclose())

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/node/instances/{instance_id}/files/read")
    async def read(instance_id: str, body: PathBody) -> StreamingResponse:
        """A regular file's bytes, streamed as the agent sends them (the node holds at most one
        window of them); the agent's refusal is an error answer, before any byte."""
        reader = await driver.read_stream(
            instance_id, body.path, offset=body.offset, limit=body.limit, max_size=body.max_size
        )

        async def chunks() -> AsyncIterator[bytes]:
            async with reader:
                async for chunk in reader:
                    yield chunk

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.put("/node/instances/{instance_id}/files/content")
    async def write_content(
        instance_id: str,
        request: Request,
        path: str,
        mode: int = 0o644,
        make_parents: bool = True,
    ) -> dict[str, Any]:
        """Write a file from the request body as it arrives (files too large for one message
        on the call channel): the agent's credit paces the upload."""
        info = await driver.write_file(
            instance_id, path, request.stream(), mode=mode, make_parents=make_parents
        )
        return rpc.file_json(info)

    # --- layers: checkpoint, rollback, fork, delete, usage (see node/layers.py) ---

    @app.post("/node/instances/{instance_id}/checkpoint")
    async def checkpoint(instance_id: str, body: LayerBody) -> dict[str, Any]:
        sandbox = _layered(driver)
        try:
            info = await sandbox.checkpoint(instance_id, body.layer_id)
        except OSError as exc:
            raise CaptureFailed(f"capture failed: {exc.strerror or exc}") from exc
        return _layer_json(sandbox, info)

    @app.post("/node/instances/{instance_id}/rollback")
    async def rollback(instance_id: str, body: LayerBody) -> dict[str, Any]:
        sandbox = _layered(driver)
        info = await sandbox.rollback(instance_id, body.layer_id)
        return {
            "state": driver.state(instance_id),
            "pid": info.pid if info else None,
            "boot_ms": info.boot_ms if info else None,
            "origin": sandbox.origin(instance_id),
        }

    @app.post("/node/instances/{instance_id}/fork")
    async def fork(instance_id: str, body: ForkBody) -> dict[str, Any]:
        sandbox = _layered(driver)
        specs = []
        for child in body.children:
            child.setdefault("image", "default")
            specs.append(_resolve_spec(driver, child, known_images))
        try:
            results = await sandbox.fork(instance_id, specs, layer_id=body.layer_id)
        except OSError as exc:
            raise CaptureFailed(f"capture failed: {exc.strerror or exc}") from exc
        children: list[dict[str, Any]] = []
        for spec, r in zip(specs, results, strict=True):
            if isinstance(r, ForkyardError):
                err = {"code": r.code, "message": r.message}
                children.append({"instance_id": spec.instance_id, "error": err})
            elif isinstance(r, Exception):
                err = {"code": "sandbox_failed", "message": str(r)[:500]}
                children.append({"instance_id": spec.instance_id, "error": err})
            else:
                children.append(
                    {"instance_id": spec.instance_id, "pid": r.pid, "boot_ms": r.boot_ms}
                )
        return {
            "layer": _layer_json(sandbox, sandbox.get_layer(body.layer_id)),
            "children": children,
        }

    @app.get("/node/layers")
    async def list_layers() -> dict[str, Any]:
        sandbox = _layered(driver)
        return {"layers": [_layer_json(sandbox, x) for x in sandbox.list_layers()]}

    @app.get("/node/layers/usage")
    async def layers_usage() -> dict[str, Any]:
        sandbox = _layered(driver)
        return await asyncio.to_thread(sandbox.layer_usage)

    @app.get("/node/layers/{layer_id}")
    async def get_layer(layer_id: str) -> dict[str, Any]:
        sandbox = _layered(driver)
        return _layer_json(sandbox, sandbox.get_layer(layer_id))

    @app.delete("/node/layers/{layer_id}")
    async def delete_layer(layer_id: str) -> dict[str, Any]:
        try:
            await _layered(driver).delete_layer(layer_id)
        except LayerInUse as exc:
            exc.details = {"instances": exc.instances, "layers": exc.layers}
            raise
        return {"deleted": layer_id}

    # One import per layer id at a time (kept: a lock dropped while another request waits on it
    # would let a third run beside it).
    import_locks: dict[str, asyncio.Lock] = {}
    transfers: list[httpx.AsyncClient] = []  # created on first use, on the serving loop

    @app.post("/node/layers/{layer_id}/export-ticket")
    async def layer_export_ticket(layer_id: str) -> dict[str, Any]:
        store = _layered(driver).layers
        store.get(layer_id)  # 404 here rather than at the pulling node
        return {"ticket": export_ticket(secret, layer_id), "expires_in_s": TICKET_TTL_S}

    @app.get("/node/layers/{layer_id}/export")
    async def export_layer(layer_id: str) -> StreamingResponse:
        chunks = export_stream(_layered(driver).layers, layer_id)
        first = await asyncio.to_thread(next, chunks)  # errors answer as errors, not a cut stream

        async def body() -> AsyncIterator[bytes]:
            # Read the next chunk while this one is sent: disk and network overlap.
            ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            try:
                yield first
                while (chunk := await ahead) is not None:
                    ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
                    yield chunk
            finally:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(ahead)  # a generator is not closed mid-step
                chunks.close()  # the file is closed even when the puller goes away

        return StreamingResponse(body(), media_type="application/vnd.forkyard.layer")

    @app.post("/node/layers/{layer_id}/import")
    async def import_layer(layer_id: str, body: ImportBody) -> dict[str, Any]:
        """Copy the layer from the node at source_url (idempotent: a layer already here is kept)."""
        sandbox = _layered(driver)
        check_layer_id(layer_id)
        lock = import_locks.setdefault(layer_id, asyncio.Lock())
        async with lock:
            if sandbox.layers.exists(layer_id):
                out = _layer_json(sandbox, sandbox.get_layer(layer_id))
                return {**out, "imported": False, "received_bytes": 0, "copy_ms": 0.0}
            image = known_images.get(body.image) if body.image else None
            if image is None and body.image and Path(body.image) in known_images.values():
                image = Path(body.image)  # a node names its image by path: only a known one
            t0 = time.monotonic()
            if not transfers:
                transfers.append(transfer_client())
            info, received = await pull_layer(
                sandbox.layers, layer_id, body.source_url, body.ticket, image, transfers[0]
            )
        return {
            **_layer_json(sandbox, info),
            "imported": True,
            "received_bytes": received,
            "copy_ms": round((time.monotonic() - t0) * 1000, 2),
        }

    @app.post("/node/layers/sweep")
    async def sweep_layers(body: SweepBody) -> dict[str, Any]:
        removed = await _layered(driver).sweep_layers(set(body.keep))
        return {"removed": sorted(removed)}

    # --- image builds: the steps that need the Debian mirror (see node/images.py) ---

    @app.post("/node/instances/{instance_id}/bootstrap")
    async def bootstrap(instance_id: str, body: BootstrapBody) -> StreamingResponse:
        """Debootstrap a suite into a new build sandbox's disk (NDJSON events)."""
        sandbox = _build_sandbox(driver, instance_id)
        node_images.check_suite(body.suite)
        node_images.check_packages(body.packages)
        step = node_images.event_stream(
            sandbox,
            instance_id,
            lambda emit: node_images.bootstrap_build_disk(
                sandbox,
                instance_id,
                suite=body.suite,
                packages=body.packages,
                disk_mb=body.disk_mb,
                cache_root=image_cache,
                mirror=node_images.apt_mirror(),
                emit=emit,
            ),
        )
        return StreamingResponse(step, media_type="application/x-ndjson")

    @app.post("/node/instances/{instance_id}/packages")
    async def fetch_packages(instance_id: str, body: PackagesBody) -> StreamingResponse:
        """Download packages for a running build sandbox into it (NDJSON events)."""
        sandbox = _build_sandbox(driver, instance_id)
        node_images.check_packages(body.packages)
        step = node_images.event_stream(
            sandbox,
            instance_id,
            lambda emit: node_images.fetch_packages(
                sandbox,
                instance_id,
                packages=body.packages,
                cache_root=image_cache,
                mirror=node_images.apt_mirror(),
                emit=emit,
            ),
        )
        return StreamingResponse(step, media_type="application/x-ndjson")

    return app


class LayerBody(BaseModel):
    layer_id: str


class ForkBody(BaseModel):
    layer_id: str
    children: list[dict[str, Any]] = Field(min_length=1, max_length=100)


class ImportBody(BaseModel):
    source_url: str = Field(min_length=8, max_length=400)
    ticket: str = Field(min_length=1, max_length=200)
    # The control plane's name of the layer's base image (e.g. `default`); resolved here.
    image: str | None = None


class SweepBody(BaseModel):
    keep: list[str]


class BootstrapBody(BaseModel):
    suite: str = Field(min_length=2, max_length=64)
    packages: list[str] = Field(default_factory=list, max_length=200)
    disk_mb: int = Field(default=2048, ge=256, le=65536)


class PackagesBody(BaseModel):
    packages: list[str] = Field(min_length=1, max_length=200)


def _build_sandbox(driver: Driver, instance_id: str) -> SandboxDriver:
    """Build steps are for the control plane's build sandboxes only."""
    if not instance_id.startswith("build-"):
        raise node_images.BuildStepFailed("only build sandboxes (build-...) take build steps")
    return _layered(driver)


class CaptureFailed(NodeError):
    code = "capture_failed"
    message = "The capture failed; the instance keeps running and no layer was kept."


class LayersUnsupported(NodeError):
    status_code = 501
    code = "layers_unsupported"
    message = "This node's driver has no layer store."


def _layered(driver: Driver) -> SandboxDriver:
    if not isinstance(driver, SandboxDriver):
        raise LayersUnsupported()
    return driver


def _resolve_spec(
    driver: Driver, spec: dict[str, Any], known_images: dict[str, Path]
) -> SandboxSpec:
    """The control plane names images (`default`) and store layers (`layer_ids`, topmost
    first); the node turns both into paths: a layer's upper dir is a lowerdir of the stack."""
    # Only names this node knows become paths: no value of the spec can make the node stack a
    # directory of the host under an instance's root.
    image = known_images.get(spec.get("image", ""))
    if image is None:
        raise UnknownImage(f"unknown image {str(spec.get('image'))[:100]!r}")
    spec["image"] = str(image)
    spec["layers"] = []
    layer_ids = spec.pop("layer_ids", None)
    if layer_ids:
        store = _layered(driver).layers
        spec["layers"] = [str(store.get(check_layer_id(lid)).upper) for lid in layer_ids]
    return SandboxSpec.from_json(spec)


class UnknownImage(NodeError):
    status_code = 422
    code = "unknown_image"
    message = "This compute server has no such image."


def _layer_json(driver: SandboxDriver, info: LayerInfo) -> dict[str, Any]:
    """A layer as the control plane sees it: its lower stack as layer ids plus the image."""
    out = info.to_json()
    lower_ids = []
    for p in info.lower[:-1]:
        lid = driver.layers.layer_of_path(p)
        if lid is not None:
            lower_ids.append(lid)
    out["lower_layers"] = lower_ids
    out["image"] = str(info.lower[-1]) if info.lower else None
    return out


def _allocated_bytes(root: Path) -> int:
    """Bytes actually allocated under `root` on its own filesystem (mounts are not descended:
    a sparse disk image counts what it holds, not its size)."""
    total = 0
    try:
        root_dev = root.stat().st_dev
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == root_dev]
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _instance_bytes(driver: Driver, instances_dir: Path, instance_id: str) -> int:
    """The instance's directory plus its disk image, which may live in the layer store."""
    used = _allocated_bytes(instances_dir / instance_id)
    disk_image = getattr(driver, "disk_image", None)
    if disk_image is not None:
        image = Path(disk_image(instance_id))
        if not image.is_relative_to(instances_dir / instance_id):
            with contextlib.suppress(OSError):
                used += image.stat().st_blocks * 512
    return used


def _storage_report(driver: Driver) -> dict[str, Any]:
    data_dir = Path(getattr(driver, "data_dir", "/"))
    # Instance disks live in the layer store when there is one: its free space is what counts.
    st = os.statvfs(getattr(driver, "store_dir", data_dir))
    instances_dir = Path(getattr(driver, "instances_dir", data_dir / "instances"))
    per_instance = {
        i: _instance_bytes(driver, instances_dir, i) for i in sorted(driver.list_owned())
    }
    return {
        "driver": driver.name,
        "free_bytes": st.f_bavail * st.f_frsize,
        "total_bytes": st.f_blocks * st.f_frsize,
        "instances": [{"instance_id": i, "used_bytes": b} for i, b in per_instance.items()],
        "used_bytes": sum(per_instance.values()),
    }
