"""The node's HTTP API: the control plane sends work here (authenticated with the node secret).
It is a thin layer over a Driver; nothing here knows about orgs or users. One router per area
(node/api/), each speaking the contract (node/contract.py, ADR 0012)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from forkyard.kit.body_limit import BodyLimitMiddleware
from forkyard.kit.crypto import constant_time_equal
from forkyard.kit.errors import ForkyardError, Unauthenticated
from forkyard.node import images as node_images
from forkyard.node.api import exec as exec_api
from forkyard.node.api import files, images, instances, layers, lsp, ports, sessions
from forkyard.node.api.deps import NodeContext
from forkyard.node.drivers.base import Driver
from forkyard.node.layers import TICKET_HEADER, check_export_ticket

log = logging.getLogger("forkyard.node")

# Request bodies the node reads before its authentication runs are bounded: a stranger at the
# node's port holds no more than this of its memory. A streamed file write is read only after
# authentication, chunk by chunk as the agent takes it (`/files/content`).
MAX_NODE_BODY = 32 * 1024 * 1024
MAX_NODE_UPLOAD = 1024 * 1024 * 1024


def create_node_app(
    driver: Driver,
    secret: str,
    known_images: dict[str, Path] | None = None,
    *,
    relay_port: int = 0,
) -> FastAPI:
    """`known_images` maps image names the control plane uses (e.g. `default`) to rootfs paths;
    `relay_port` is where the port relay beside this API listens (node/port_relay.py)."""
    known = known_images or {}
    image_cache = node_images.image_cache_root(known, driver.data_dir / "images")
    if "default" in known:
        known.setdefault(node_images.SCRATCH_IMAGE, node_images.ensure_scratch_image(image_cache))
    node = NodeContext(
        driver=driver,
        secret=secret,
        images=known,
        image_cache=image_cache,
        relay_port=relay_port,
    )

    # A dependency, not an HTTP middleware: BaseHTTPMiddleware costs milliseconds per call on
    # the exec hot path (bench/compute.py).
    async def authenticate(request: HTTPConnection) -> None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if given and constant_time_equal(given, secret):
            return
        # Another node pulling a layer presents a ticket for that one export (node/layers/),
        # honoured once.
        ticket, layer_id = request.headers.get(TICKET_HEADER), request.path_params.get("layer_id")
        if (
            ticket
            and layer_id
            and request.scope.get("method") == "GET"
            and request.url.path == f"/node/layers/{layer_id}/export"
            and check_export_ticket(secret, layer_id, ticket, node.honoured_tickets)
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
    app.state.node = node
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

    for router in (
        instances.router,
        exec_api.router,
        files.router,
        layers.router,
        images.router,
        ports.router,
        sessions.router,
        lsp.router,
    ):
        app.include_router(router)
    return app
